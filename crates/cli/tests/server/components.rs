//! Real components for the server tests: Prometheus and rsyslog.
