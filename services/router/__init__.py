"""The router: picks a healthy, under-limit deployment for each request (gRPC, state in Redis)."""
