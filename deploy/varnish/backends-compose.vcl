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

# The compose backplane network (compose.yaml), where the renderers purge from. Purges are
# accepted only on the admin listener (6082), which compose does not publish.
acl purgers {
    "127.0.0.1";
    "172.28.0.0"/24;
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
