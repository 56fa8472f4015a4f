vcl 4.1;
# pagecache edge cache (Varnish 7.1 + varnish-modules' xkey). docs/architecture.rst, "The edge".
#
# Two listeners, named on the command line:
#   -a public=:6081   readers: GET/HEAD of pages, nothing else
#   -a admin=:6082    renderers: PURGE (xkey soft/hard), REFRESH (fetch a page anew) and BAN,
#                     from the "purgers" ACL only
#
# Internal state between passes travels in X-Pagecache-* request headers; a client's copies of
# them are removed on the first pass.
#
# No client can make a page that others get (docs/architecture.rst, "Hostile clients"): a Host
# that is not a host name is refused here, the renderer never sees a client's Host, and only
# 200, 301, 404 and 410 are stored.

import std;
import var;
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
    # The orchestrator's probe: Varnish is up and this VCL is loaded (never a backend fetch).
    if (req.url == "/varnish-health" && (req.method == "GET" || req.method == "HEAD")) {
        return (synth(200, "OK"));
    }
    if (req.restarts == 0) {
        call pagecache_refuse_bad_host;
        call pagecache_clean_request;
    }
    if (local.socket == "admin") {
        call pagecache_admin;
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (synth(405, "Method Not Allowed"));
    }
    # One expression for what a reader's page URL never has (a query, a percent-encoding, an
    # internal path): the commonest hit pays one match, not three.
    if (req.url ~ "[?%]|^/(api(/|\?|$)|metrics|healthcheck|_)") {
        call pagecache_route_unusual_url;
    }
    # Pages are the same for everyone: a cookie must not split the cache.
    unset req.http.Cookie;
    unset req.http.Authorization;
    if (req.http.X-Pagecache-Pass == "stale") {
        # The fetch failed and a grace copy exists: any grace copy will do (stale-if-error; the
        # object's own grace, the renderer's stale-if-error, is the limit).
        set req.grace = 3650d;
    } elsif (req.http.X-Pagecache-Pass == "revalidate") {
        # A grace copy exists beyond the revalidation window: fetch now, keep it as the fallback.
        set req.grace = 0s;
    }
    # Otherwise req.grace stays unset: no cap on the object's own grace, so a copy past its TTL
    # reaches vcl_hit, which decides (a sick renderer is asked about there, not on every hit).
    return (hash);
}

sub pagecache_refuse_bad_host {
    # RFC 9112 §3.2: a Host that is not a host name (and port), or none on HTTP/1.1, is a 400.
    # An absolute-form target (GET http://host/path) arrives here with its host as Host.
    # Varnish itself refuses a second Host header. The answer is synthetic: never stored.
    if (req.http.Host) {
        if (req.http.Host !~ "^([A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.?|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?$") {
            return (synth(400, "Bad Request"));
        }
    } elsif (req.proto != "HTTP/1.0") {
        return (synth(400, "Bad Request"));
    }
}

sub pagecache_clean_request {
    unset req.http.X-Pagecache-Pass;
    unset req.http.X-Pagecache-Purged;
    # A client's request id is kept only when it is safe to log and to pass on.
    if (!req.http.X-Request-Id) {
        set req.http.X-Request-Id = "varnish-" + req.xid;
    } elsif (req.http.X-Request-Id !~ "^[A-Za-z0-9._-]{1,64}$") {
        set req.http.X-Request-Id = "varnish-" + req.xid;
    }
    # Accept-Encoding needs nothing here: with http_gzip_support (the default) Varnish itself
    # reduces it to "gzip" or nothing after vcl_recv, so it never splits the cache.
}

sub pagecache_route_unusual_url {
    # The editors' API, health, metrics and the box alone (/_fragment/...) live on the renderer's
    # internal service, not here.
    if (req.url ~ "^/(api(/|\?|$)|metrics|healthcheck|_)") {
        return (synth(404, "Not Found"));
    }
    call pagecache_normalise_url;
    if (req.url ~ "%") {
        # A percent-encoded spelling: the renderer answers a 301 to the canonical URL (or a 404),
        # and no object is made for it, so spellings can't multiply a page's copies.
        return (pass);
    }
}

sub pagecache_normalise_url {
    # No page reads a query parameter (the allow-list of every route is empty): tracking
    # parameters, cache busters (?r=<random>) and anything else go, so one page is one object.
    # A route that comes to use a parameter keeps just that one here, sorted (std.querysort).
    set req.url = regsub(req.url, "\?.*$", "");
}

sub vcl_hash {
    # The URL alone: every Host the edge is reached by shares the canonical host's objects (the
    # renderer's links come from SITE_URL, never from Host), so a made-up Host makes no new one.
    hash_data(req.url);
    return (lookup);
}

sub pagecache_admin {
    if (client.ip !~ purgers) {
        return (synth(403, "Forbidden"));
    }
    if (req.method == "BAN") {
        if (!req.http.X-Ban-Url) {
            return (synth(400, "X-Ban-Url header required"));
        }
        # X-Ban-Url is a regular expression on the URL (no spaces: std.ban() splits on them).
        if (std.ban("obj.http.X-Url ~ " + req.http.X-Ban-Url)) {
            return (synth(200, "Ban added"));
        }
        return (synth(400, std.ban_error()));
    }
    if (req.method == "REFRESH") {
        # After a soft purge, the publisher has the node fetch the new copy now (it replaces the
        # old object) before it purges the CDN: the CDN's refetch then finds only the new one.
        # Marked as a revalidation: a failed fetch is abandoned and the soft-purged copy stays
        # as the grace copy; the publisher gets the 503 (vcl_synth does not restart it).
        set req.method = "GET";
        set req.hash_always_miss = true;
        set req.http.X-Pagecache-Pass = "revalidate";
        return;
    }
    if (req.method != "PURGE") {
        return (synth(405, "Method Not Allowed"));
    }
    if (req.http.X-Pagecache-Box-Min ~ "^[0-9]{1,18}$" && std.integer(req.http.X-Pagecache-Box-Min, 0) >
        std.integer(var.global_get("box-min") + "", 0)) {
        # The purge of a changed "latest news" box names its version: from now on this node keeps
        # no page that shows an older box (vcl_backend_fetch, vcl_backend_response). Never lowered.
        var.global_set("box-min", req.http.X-Pagecache-Box-Min);
    }
    # One request may carry both: hard keys are gone at once; soft ones keep the old copy only
    # while the new one is fetched (no herd).
    if (req.http.xkey-purge && req.http.xkey-softpurge) {
        set req.http.X-Pagecache-Purged = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.X-Pagecache-Purged + ", soft-purged " +
            xkey.softpurge(req.http.xkey-softpurge)));
    }
    if (req.http.xkey-purge) {
        return (synth(200, "Purged " + xkey.purge(req.http.xkey-purge)));
    }
    if (req.http.xkey-softpurge) {
        return (synth(200, "Soft-purged " + xkey.softpurge(req.http.xkey-softpurge)));
    }
    call pagecache_normalise_url;
    return (purge);
}

sub vcl_hit {
    if (obj.ttl >= 0s) {
        return (deliver);
    }
    # A failed fetch, a sick renderer, or a page's stale-while-revalidate window (the renderer's
    # STALE_WHILE_REVALIDATE, 10 s when it names none; read here, where only expired copies come,
    # rather than stored in a header every hit would have to remove): the grace copy.
    if (req.http.X-Pagecache-Pass == "stale" || !std.healthy(req.backend_hint)) {
        return (deliver);
    }
    if (obj.status == 200 && obj.ttl + std.duration(regsub(obj.http.Cache-Control,
        "^(.*[ ,])?stale-while-revalidate=([0-9]+).*$", "\2") + "s", 10s) > 0s) {
        return (deliver);
    }
    # Older than that: fetch now, and remember that this copy is the fallback if the fetch fails.
    set req.http.X-Pagecache-Pass = "revalidate";
    return (restart);
}

sub vcl_backend_fetch {
    if (bereq.is_bgfetch && bereq.http.X-Pagecache-Pass == "stale") {
        # The grace copy is being served because a fetch just failed: no second try right away.
        return (abandon);
    }
    # The renderer never reads Host (its links come from SITE_URL), so it gets one it can't
    # refuse, whatever the client sent. Set last: a request whose headers left the fetch no room
    # (Varnish drops what does not fit, Host included) is refused here, before the renderer.
    unset bereq.http.X-Pagecache-Box-Min;
    if (var.global_get("box-min")) {
        # The renderer reads its box again when its copy is older than this.
        set bereq.http.X-Pagecache-Box-Min = var.global_get("box-min");
    }
    unset bereq.http.Host;
    set bereq.http.Host = "pagecache-renderer";
    if (bereq.http.Host != "pagecache-renderer") {
        return (error(431, "Request Header Fields Too Large"));
    }
}

sub vcl_backend_response {
    # Where the renderer found the page and why (X-Tier, its Cache-Status members, failure
    # details such as stale-mongodb-timeout) is for operators: it stays in this fetch's log
    # (varnishlog -b, BerespHeader; X-Request-Id finds it) and on the renderer's internal
    # listener, never in the stored object, so readers never see it.
    unset beresp.http.X-Tier;
    # The request id is the request's, set on delivery: the fetch's own is in its log.
    unset beresp.http.X-Request-Id;
    unset beresp.http.Server;
    # What a hit answers that depends on the object alone is set here, once per fetch, and stored
    # with it; vcl_deliver changes only what depends on the request (docs/architecture.rst, "What
    # a hit costs, tier by tier"). This cache's Cache-Status member, RFC 9211's terse form, replaces
    # the renderer's; a miss or a grace copy has its own, set on delivery.
    set beresp.http.X-Cache = "HIT";
    set beresp.http.Cache-Status = "varnish; hit";
    call pagecache_cdn_keys;
    # Kept for BAN expressions that match on the URL (ban-lurker friendly).
    set beresp.http.X-Url = bereq.url;
    if (beresp.status != 200 && beresp.status != 301 && beresp.status != 404 && beresp.status != 410) {
        # Only those four are pages; anything else (a 400 for a request the renderer refused, a
        # 500, a 503) is one client's or one moment's answer.
        if (bereq.is_bgfetch || bereq.http.X-Pagecache-Pass == "revalidate") {
            # A grace copy exists: never replace it with an error; vcl_synth restarts for it.
            return (abandon);
        }
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        if (beresp.status == 503) {
            # Nothing to fall back on: the renderer's own answer (503 + Retry-After) goes
            # through, kept 1 s. Every reader waiting on this fetch gets it at once, and the next
            # second's readers too: not cached, the waiting list would be woken a few at a time,
            # each one fetching again behind a slow failure, so the queue grew while it drained.
            set beresp.ttl = 1s;
            return (deliver);
        }
        # Hit-for-miss: this answer goes to this client only, and the next fetch may store a page.
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (beresp.http.X-Pagecache-Box && std.integer(beresp.http.X-Pagecache-Box, 0) <
        std.integer(var.global_get("box-min") + "", 0)) {
        # A page showing an older box than a purge has named since this fetch began (a takedown
        # the box showed): fetched again, asking for the new one; never kept.
        if (bereq.retries < 2) {
            return (retry);
        }
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # Its box version was needed only for the check above: not stored (answers that were not
    # stored lose it on delivery).
    unset beresp.http.X-Pagecache-Box;
    if (!beresp.http.Cache-Control) {
        # The renderer sets the TTL; this holds the contract if it did not.
        set beresp.ttl = 10s;
    }
    if (beresp.http.Set-Cookie && beresp.ttl > 0s) {
        unset beresp.http.Set-Cookie;
    }
    if (beresp.http.Content-Type ~ "^(text/|application/(json|xml|rss\+xml|javascript)|image/svg)") {
        # Stored gzipped once; gunzipped on delivery for clients that do not accept gzip.
        set beresp.do_gzip = true;
    }
    if (beresp.status == 200) {
        # Grace is the renderer's stale-if-error (STALE_IF_ERROR), used in full only when the
        # backend is sick or a fetch fails; keep lets an expired copy be revalidated with a cheap
        # 304 (never served as stale). Its stale-while-revalidate (STALE_WHILE_REVALIDATE) is the
        # part of the grace served while refetching in the background (vcl_hit).
        set beresp.grace = 24h;
        if (beresp.http.Cache-Control ~ "(^|[ ,])stale-if-error=[0-9]+") {
            set beresp.grace = std.duration(
                regsub(beresp.http.Cache-Control, "^(.*[ ,])?stale-if-error=([0-9]+).*$", "\2") + "s", 24h);
        }
        set beresp.keep = 1h;
    } else {
        # 404s and other junk: the renderer's TTL (NOT_FOUND_TTL for a 404), no longer stale than
        # fresh, no keep, so that scanners cannot evict the copies stale-if-error needs.
        set beresp.grace = beresp.ttl;
        set beresp.keep = 0s;
    }
    return (deliver);
}

sub vcl_backend_error {
    if (bereq.is_bgfetch || bereq.http.X-Pagecache-Pass == "revalidate") {
        # The renderer is unreachable and a grace copy exists: vcl_synth restarts for it.
        return (abandon);
    }
    unset beresp.http.Server;
    set beresp.http.Content-Type = "text/plain; charset=utf-8";
    set beresp.http.Cache-Control = "no-store";
    set beresp.ttl = 0s;
    set beresp.grace = 0s;
    set beresp.keep = 0s;
    if (beresp.status == 431) {
        # Refused in vcl_backend_fetch: the client's fault, nothing to retry.
        synthetic(beresp.reason + {"
"});
        return (deliver);
    }
    set beresp.http.Retry-After = "5";
    synthetic("Service temporarily unavailable" + {"
"});
    return (deliver);
}

sub pagecache_cdn_keys {
    # The CDN in front gets the page's surrogate keys under its own names, for its purges:
    # Fastly's Surrogate-Key (space-separated, as xkey) and Cloudflare's Cache-Tag (commas).
    if (beresp.http.xkey) {
        set beresp.http.Surrogate-Key = beresp.http.xkey;
        set beresp.http.Cache-Tag = regsuball(beresp.http.xkey, " +", ",");
    }
}

sub vcl_deliver {
    # A hit of an object stored by this VCL answers with what was stored at fetch time; the rest
    # is set here. (An object stored by an earlier VCL, before a reload, has none of it.) A hit is
    # told by the object itself (a fetched object has no hits yet), not by a mark vcl_hit would set.
    if (obj.hits == 0 || obj.ttl < 0s || !resp.http.X-Cache) {
        if (obj.hits > 0 && obj.ttl >= 0s) {
            set resp.http.X-Cache = "HIT";
            set resp.http.Cache-Status = "varnish; hit";
        } elsif (obj.hits > 0) {
            set resp.http.X-Cache = "HIT-STALE";
            set resp.http.Cache-Status = "varnish; hit; detail=grace";
            # A copy past its TTL (a purge being refetched, a sick renderer): the CDN must not
            # keep it for its own long TTL, or it would serve the old page after we have the new one.
            set resp.http.CDN-Cache-Control = "max-age=1";
            set resp.http.Surrogate-Control = "max-age=1";
        } else {
            set resp.http.X-Cache = "MISS";
            set resp.http.Cache-Status = "varnish; fwd=miss";
        }
        if (resp.http.xkey && !resp.http.Surrogate-Key) {
            set resp.http.Surrogate-Key = resp.http.xkey;
            set resp.http.Cache-Tag = regsuball(resp.http.xkey, " +", ",");
        }
        unset resp.http.X-Pagecache-Box;
    }
    unset resp.http.X-Url;
    unset resp.http.xkey;
    call pagecache_hide_software;
    set resp.http.X-Request-Id = req.http.X-Request-Id;
}

sub vcl_synth {
    # A fetch failed while a grace copy exists: look again, this time taking any grace copy
    # (a reader's; a REFRESH on the admin listener answers its 503).
    if (resp.status == 503 && req.http.X-Pagecache-Pass == "revalidate" && local.socket != "admin") {
        set req.http.X-Pagecache-Pass = "stale";
        return (restart);
    }
    if (resp.status == 503) {
        set resp.http.Retry-After = "5";
    }
    if (resp.status == 405) {
        if (local.socket == "admin") {
            set resp.http.Allow = "PURGE, BAN";
        } else {
            set resp.http.Allow = "GET, HEAD";
        }
    }
    set resp.http.X-Request-Id = req.http.X-Request-Id;
    unset resp.http.Server;
    call pagecache_hide_software;
    set resp.http.Content-Type = "text/plain; charset=utf-8";
    set resp.http.Cache-Control = "no-store";
    set resp.body = resp.reason + {"
"};
    return (deliver);
}

sub pagecache_hide_software {
    # No software names or versions to the public, nor this node's transaction ids (X-Varnish):
    # operators find a request in varnishlog by its X-Request-Id. (Server is dropped from what is
    # stored at fetch time and from synthetic answers in vcl_synth: a hit has none to drop.)
    unset resp.http.X-Varnish;
    set resp.http.Via = "1.1 pagecache";
}
