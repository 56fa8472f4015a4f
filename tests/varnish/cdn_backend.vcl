# The emulated CDN's deployment part under varnishtest: -vcl+backend declares the backend (s1).
acl purgers {
    "127.0.0.1";
}
