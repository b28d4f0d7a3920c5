"""Outbound connections to places an outsider chose (image URLs from an upstream, later webhook
targets): ``guard`` decides where we may connect and connects only there; ``fetch`` reads
answers with a size cap and follows redirects under the same rules."""
