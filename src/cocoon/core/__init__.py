"""cocoon.core: what every room shares and nothing else: settings loading, key files, the one uvicorn
runner and the native-library load order. It imports only the standard library, third-party
libraries and :mod:`cocoon.errors`.
"""
