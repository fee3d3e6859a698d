"""The state store: tables, engine, and the queries the service and worker need."""
