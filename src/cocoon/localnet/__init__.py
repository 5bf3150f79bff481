"""cocoon.localnet: the whole network assembled in one process (``cocoon up``, ``cocoon demo``, the
end-to-end tests) and the benchmarks that run on it. Top of the house below ``cli``.
"""

from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = ["LocalNetwork", "LocalNetworkConfig"]
