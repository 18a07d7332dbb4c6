"""TLS for the public listeners: RTMPS and HTTPS (settings, certificates, acceptor)."""
