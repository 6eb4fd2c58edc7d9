"""Transport security and access control: certificates, TLS contexts, tokens and roles.

certs   a cluster CA and node / client certificates (the `raftkv certs` command)
tls     ssl contexts for peers (mutual TLS) and HTTP, and identities read from certificates
auth    roles (read < write < admin), bearer-token tables, which route needs which role
config  SecurityConfig: what a node enforces (TLS files, tokens, connection limits)
"""
