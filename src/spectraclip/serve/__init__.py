"""The HTTP search service (FastAPI) in front of an index, and the web page it serves at `/`."""
