vcl 4.1;
# The emulated CDN (devstack only): a second Varnish in front of our edge that behaves, for what
# pagecache relies on, like Fastly and Cloudflare. docs/architecture.rst, "The CDN tier".
#
#   -a public=…   readers (browsers); -a admin=…   the purge API stub's translated purges
#
# Its lifetime of a page is Surrogate-Control's (Fastly reads it first), else CDN-Cache-Control's
# (RFC 9213, Cloudflare), else Cache-Control's as Varnish reads it; stale-while-revalidate there is
# its grace. Surrogate-Key names what a purge by key removes. Like Fastly it strips
# Surrogate-Control before delivery; like both it keeps the keys to itself.

import std;
import xkey;

# cdn_backend.vcl: "backend edge" (our Varnish's public listener) and "acl purgers"; devstack
# writes it per run.
include "cdn_backend.vcl";

sub vcl_recv {
    if (local.socket == "admin") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (req.method != "PURGE") {
            return (synth(405, "Method Not Allowed"));
        }
        if (req.http.xkey-purge) {
            return (synth(200, "Purged " + xkey.purge(req.http.xkey-purge)));
        }
        if (req.http.xkey-softpurge) {
            return (synth(200, "Soft-purged " + xkey.softpurge(req.http.xkey-softpurge)));
        }
        return (synth(400, "xkey-purge or xkey-softpurge required"));
    }
    # The request's id, as a vendor's own (CF-Ray, Fastly's X-Request-ID rule) would be: the
    # reader's when it sent a usable one, passed upstream so every tier's log names the same id.
    if (req.http.X-Request-Id !~ "^[A-Za-z0-9._-]{1,64}$") {
        set req.http.X-Request-Id = "cdn-" + req.xid;
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    unset req.http.Cookie;
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_response {
    # Like Fastly's and Cloudflare's defaults, narrowed to the pages our edge stores: any other
    # answer goes to its own client only, and a refetch that gets one leaves the old copy be.
    if (beresp.status != 200 && beresp.status != 301 && beresp.status != 404 && beresp.status != 410) {
        if (bereq.is_bgfetch) {
            return (abandon);
        }
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        unset beresp.http.Surrogate-Control;
        return (deliver);
    }
    if (beresp.http.Surrogate-Control ~ "max-age=[0-9]+") {
        set beresp.http.X-Cdn-Lifetime = beresp.http.Surrogate-Control;
    } elsif (beresp.http.CDN-Cache-Control ~ "max-age=[0-9]+") {
        set beresp.http.X-Cdn-Lifetime = beresp.http.CDN-Cache-Control;
    }
    if (beresp.http.X-Cdn-Lifetime) {
        set beresp.ttl = std.duration(regsub(beresp.http.X-Cdn-Lifetime, "^.*max-age=([0-9]+).*$", "\1s"), 0s);
        set beresp.grace = 0s;
        if (beresp.http.X-Cdn-Lifetime ~ "stale-while-revalidate=[0-9]+") {
            set beresp.grace = std.duration(
                regsub(beresp.http.X-Cdn-Lifetime, "^.*stale-while-revalidate=([0-9]+).*$", "\1s"), 0s);
        }
        unset beresp.http.X-Cdn-Lifetime;
    }
    set beresp.http.xkey = beresp.http.Surrogate-Key;
    unset beresp.http.Surrogate-Control;
    # Not stored: a hit answers its own request's id (vcl_deliver), not the filling fetch's.
    unset beresp.http.X-Request-Id;
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-CDN-Cache = "HIT";
    } else {
        set resp.http.X-CDN-Cache = "MISS";
    }
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
    unset resp.http.Cache-Tag;
    # The emulator's own transaction ids: a vendor adds its own (CF-Ray, X-Served-By), not ours.
    unset resp.http.X-Varnish;
    set resp.http.X-Request-Id = req.http.X-Request-Id;
}
