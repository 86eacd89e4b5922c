"""I/O at the edges: files, Kafka, HTTP, the embedded broker, alert sinks. Each adapter sits
behind a small interface so the core and the agents never touch a socket or a path directly."""
