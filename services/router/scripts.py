"""Lua scripts made of shared pieces: each script is its pieces' text joined in order, so the
sliding window (``lua/window.lua``) and the deployment pick (``lua/deployments.lua``) exist once
and every script that needs them runs exactly the same code. Read at construction, never at import."""

from __future__ import annotations

from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
LIMITS_LUA_DIR = Path(__file__).resolve().parent / "limits" / "lua"

# Route without an Admission: the hot path, nothing but the deployment pick.
ROUTE = (LUA_DIR / "window.lua", LUA_DIR / "deployments.lua", LUA_DIR / "route.lua")
# ReportOutcome: health (outlier detection), in-flight counts, latency figures.
HEALTH = (LUA_DIR / "window.lua", LUA_DIR / "health.lua")
# Overview: reads only.
OVERVIEW = (LUA_DIR / "window.lua", LUA_DIR / "overview.lua")
ADMIT = (
    LUA_DIR / "window.lua",
    LUA_DIR / "deployments.lua",
    LIMITS_LUA_DIR / "calendar.lua",
    LIMITS_LUA_DIR / "reservations.lua",
    LIMITS_LUA_DIR / "admit.lua",
)
SETTLE = (LIMITS_LUA_DIR / "reservations.lua", LIMITS_LUA_DIR / "settle.lua")


def lua_source(pieces: tuple[Path, ...]) -> str:
    """One script from its pieces (they share locals, so they must be one chunk)."""
    return "\n".join(f"-- [{piece.name}]\n{piece.read_text()}" for piece in pieces)
