"""ideohub: a self-hosted server for the Ideogram image API."""

__version__ = "0.1.0"
