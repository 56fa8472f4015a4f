# The renderer behind this Varnish (one host; devstack writes a per-run copy with the real port).
backend renderer {
    .host = "127.0.0.1";
    .port = "8888";
    .probe = healthcheck;
    .connect_timeout = 1s;
    .first_byte_timeout = 5s;
    .between_bytes_timeout = 2s;
}

# Who may purge or ban: the renderers that publish, here on this host.
acl purgers {
    "127.0.0.1";
    "::1";
}
