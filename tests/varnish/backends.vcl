# The test deployment's part of the VCL: varnishtest's -vcl+backend declares the backend (s1).
acl purgers {
    "127.0.0.1";
}
