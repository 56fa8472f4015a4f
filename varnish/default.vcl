vcl 4.1;
# pagecache edge cache (Varnish 7.1 + varnish-modules' xkey). DESIGN §2 is the contract.

import std;
import xkey;

# The renderer's readiness check: a sick probe makes Varnish serve grace copies at once.
probe healthcheck {
    .url = "/healthcheck";
    .interval = 1s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

# backends.vcl is the deployment's part: the renderer backend(s), how requests pick one, and
# "acl purgers" (who may PURGE/BAN). devstack writes one per run; deploy/ has compose and k8s ones.
include "backends.vcl";

sub vcl_recv {
    if (req.method == "PURGE" || req.method == "BAN") {
        call pagecache_invalidate;
    }
    if (!req.http.X-Request-Id) {
        set req.http.X-Request-Id = "varnish-" + req.xid;
    }
    # The editors' API and health/metrics endpoints are never cached.
    if (req.url ~ "^/(api/|healthcheck|metrics)") {
        return (pass);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (synth(405, "Method Not Allowed"));
    }
    # Article pages are the same for everyone: a cookie must not split the cache.
    unset req.http.Cookie;
    if (req.restarts > 0 && req.http.X-Pagecache-Stale-If-Error) {
        # Second pass after a failed fetch: any grace copy will do (stale-if-error).
        set req.grace = 24h;
    } elsif (std.healthy(req.backend_hint)) {
        # Healthy backend: serve stale only briefly while refreshing (stale-while-revalidate).
        set req.grace = 10s;
    }
    return (hash);
}

sub pagecache_invalidate {
    if (client.ip !~ purgers) {
        return (synth(403, "Forbidden"));
    }
    if (req.method == "BAN") {
        if (!req.http.X-Ban-Url) {
            return (synth(400, "X-Ban-Url header required"));
        }
        ban("obj.http.X-Url ~ " + req.http.X-Ban-Url);
        return (synth(200, "Ban added"));
    }
    if (req.http.xkey-softpurge) {
        # Soft purge: the old copy is served only while the new one is fetched (no herd).
        set req.http.X-Purged = xkey.softpurge(req.http.xkey-softpurge);
        return (synth(200, "Soft-purged " + req.http.X-Purged));
    }
    if (req.http.xkey-purge) {
        set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.X-Purged));
    }
    return (purge);
}

sub vcl_hit {
    if (obj.ttl >= 0s) {
        set req.http.X-Pagecache-Cache = "HIT";
    } else {
        set req.http.X-Pagecache-Cache = "HIT-STALE";
    }
}

sub vcl_backend_response {
    # Kept for BAN expressions that match on the URL (ban-lurker friendly).
    set beresp.http.X-Url = bereq.url;
    if (beresp.status >= 500) {
        # Never replace a good copy with an error; vcl_synth retries with any grace copy.
        return (abandon);
    }
    if (!beresp.http.Cache-Control) {
        # The renderer sets the TTL; this holds the contract if it did not.
        set beresp.ttl = 10s;
    }
    if (beresp.http.Set-Cookie && beresp.ttl > 0s) {
        unset beresp.http.Set-Cookie;
    }
    # Long grace: used in full only when the backend is sick or a fetch fails (req.grace).
    set beresp.grace = 24h;
    # Lets Varnish revalidate an expired copy with a cheap 304 (never served as stale).
    set beresp.keep = 1h;
    return (deliver);
}

sub vcl_backend_error {
    # The renderer is unreachable: let vcl_synth retry with any grace copy.
    return (abandon);
}

sub vcl_deliver {
    if (req.http.X-Pagecache-Cache) {
        set resp.http.X-Cache = req.http.X-Pagecache-Cache;
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # RFC 9211: the renderer's members first, the cache nearest the client last.
    if (resp.http.X-Cache == "HIT") {
        set resp.http.Cache-Status = resp.http.Cache-Status + ", varnish; hit";
    } elsif (resp.http.X-Cache == "HIT-STALE") {
        set resp.http.Cache-Status = resp.http.Cache-Status + ", varnish; hit; detail=grace";
    } else {
        set resp.http.Cache-Status = resp.http.Cache-Status + ", varnish; fwd=miss";
    }
    set resp.http.Cache-Status = regsub(resp.http.Cache-Status, "^, ", "");
    unset resp.http.X-Url;
    unset resp.http.xkey;
    set resp.http.X-Request-Id = req.http.X-Request-Id;
}

sub vcl_synth {
    # A failed fetch (renderer down before the probe noticed): try once more, allowing any grace copy.
    if (resp.status == 503 && req.restarts == 0 && (req.method == "GET" || req.method == "HEAD")
        && !req.http.X-Pagecache-Stale-If-Error) {
        set req.http.X-Pagecache-Stale-If-Error = "1";
        return (restart);
    }
    if (resp.status == 503) {
        set resp.http.Retry-After = "5";
    }
}
