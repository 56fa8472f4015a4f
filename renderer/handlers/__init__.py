"""Thin handlers: parse, call one function, write the response."""
