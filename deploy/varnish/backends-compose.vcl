# docker compose: two renderer containers, round robin, each with the health probe.
import directors;

backend renderer1 {
    .host = "renderer-1";
    .port = "8888";
    .probe = healthcheck;
    .connect_timeout = 1s;
    .first_byte_timeout = 5s;
}

backend renderer2 {
    .host = "renderer-2";
    .port = "8888";
    .probe = healthcheck;
    .connect_timeout = 1s;
    .first_byte_timeout = 5s;
}

# The compose network's private addresses: renderers purge from their own containers.
acl purgers {
    "127.0.0.1";
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
}

sub vcl_init {
    new renderers = directors.round_robin();
    renderers.add_backend(renderer1);
    renderers.add_backend(renderer2);
}

# Runs before default.vcl's vcl_recv (Varnish concatenates subroutines in order).
sub vcl_recv {
    set req.backend_hint = renderers.backend();
}
