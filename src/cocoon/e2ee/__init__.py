"""End-to-end sealing between an app's client and the model's worker: the proxy routes, meters and
bills, but never reads a sealed prompt or answer."""
