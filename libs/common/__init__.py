"""What more than one ModelRouter service imports: settings, config, errors, telemetry, NATS names."""
