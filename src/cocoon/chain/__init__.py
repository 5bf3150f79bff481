r"""cocoon.chain — TON for Cocoon: contracts, the embedded chain, payments.

The services talk to a chain only through :class:`Chain` (async; ``LocalChain`` and ``LiteChain``
implement it)::

    chain = LocalChain(home / "chain.sqlite")          # embedded, real TVM (tonpy's emulator)
    handles = await bootstrap_local_network(chain, owner=KeyPair.generate(),
        proxy_image_hashes=[...], worker_image_hashes=[...], models={model_hash: "name"},
        proxy_addresses=["127.0.0.1:8800"], params=default_params(price_per_token=20))
    config = await fetch_root_config(chain, handles.root)   # RootConfig: hashes, proxies, params
    proxy_sc = await handles.open_proxy(proxy_key, proxy_wallet_key)           # funded from the faucet
    client_sc = await handles.open_client(client_wallet_key, proxy_sc, proxy_key.public, amount=10 * TON)

Services open their chain from settings: ``open_chain(ChainSettings(local_path=...))`` (or
``kind="lite"`` with a global config / liteservers). Every address used as a key goes through
``normalize_address`` (one raw ``wc:hex`` form per account; ``AddressError`` otherwise).

``LocalChain(path, clock=time.time)`` follows the wall clock (close delays pass in real time); without
``clock`` time moves only with ``advance()``. ``LiteChain.from_config("global.config.json")`` is the
same interface on TON testnet/mainnet (pytoniq liteservers). Wallet keys: ``KeyPair.generate()``,
``KeyPair.from_mnemonic(words)`` or ``KeyPair.from_sealed_key(secret)`` with the TEE's sealed secret.

Proxy loop: ``read_proxy_state`` (committed seqno + session hash → the ledger's ``mark_committed``,
rollback check), ``read_client_state`` (balance, stake, tokens charged), ``read_worker_state`` (tokens
paid); then post what :class:`PostingPolicy` says is due.

Money (proxy side, pure):

* :func:`sign` a cumulative client charge / refund grant / worker payout for one contract,
  :func:`sign_state_commit` the proxy state (seqno + session hash), :func:`verify` offline,
  ``SignedMessage.body(excess)`` is what gets posted; :func:`post_signed` posts it via a wallet.
* :class:`PostingPolicy` decides when a post is worth its fee.
* :mod:`cocoon.chain.pricing` prices usage exactly as the reference (``price``, ``adjust``).

Worker collateral (:mod:`cocoon.chain.slashing`): the owner :func:`stake_worker`\ s into its worker
contract (``WorkerState.stake``); the proxy :func:`sign_slash_claim`\ s (amount, evidence hash,
counter) and posts it with :func:`post_signed` (``SLASH_CLAIM_VALUE``); the worker contract asks the
root for its dispute window and bound (``WorkerState.pending_slash``); the owner may
:func:`dispute_slash` with a :func:`sign_slash_receipt` receipt of the same proxy for the same
evidence; after the window anyone may :func:`execute_slash` (the amount goes to the root owner).
A worker owner whose proxy is gone closes alone: :func:`request_worker_close`, then after the notice
:func:`complete_worker_close`.
:func:`stake_refusal` says why a worker's stake does not meet ``RootConfig.collateral``.

Contracts (Tolk, compiled by ``make contracts``; code in ``contracts/build``): root, proxy, client,
worker and a v3-style wallet. Layouts and our own choices are in :mod:`cocoon.chain.messages` and
``contracts/README.md``. Client contract semantics the proxy relies on: ``balance`` is everything the
client holds there (stake included), ``stake`` the part it cannot withdraw while open, ``tokens_used``
the cumulative tokens charged so far by signed IOUs.

Throughput and gas per operation: ``cocoon chain --home DIR local bench``.
"""

from cocoon.core.native import prime_llama_before_tonpy as _prime_llama_before_tonpy

# Must run before anything below imports tonpy (see cocoon.core.native).
_prime_llama_before_tonpy()

from cocoon.chain._ton import Address
from cocoon.chain.address import (
    address_key,
    check_address,
    check_optional_address,
    normalize_address,
    parse_address,
)
from cocoon.chain.api import AccountState, Chain, StackValue, TxRecord
from cocoon.chain.code import CONTRACT_NAMES, CompiledContract, load_contract
from cocoon.chain.decode import decode_body
from cocoon.chain.errors import (
    AccountNotFound,
    AddressError,
    ChainError,
    ChainStoreError,
    GetMethodError,
    InsufficientFunds,
    MessageError,
    SignatureError,
    TransactionFailed,
)
from cocoon.chain.litechain import LiteChain
from cocoon.chain.localchain import FAUCET_ADDRESS, LocalChain
from cocoon.chain.market import DEFAULT_COLLATERAL, DEFAULT_SERVICE_CLASSES, Collateral, ServiceClass
from cocoon.chain.messages import (
    STATE_ACTIVE,
    STATE_CLOSED,
    STATE_CLOSING,
    ClientState,
    ExitCode,
    Op,
    Params,
    PendingSlash,
    ProxyEntry,
    ProxyState,
    RootState,
    WorkerState,
    parse_client_state,
    parse_proxy_state,
    parse_root_state,
    parse_worker_state,
)
from cocoon.chain.network import (
    TON,
    LocalNetworkHandles,
    RootConfig,
    bootstrap_local_network,
    client_contract,
    default_params,
    deploy_root,
    ensure_success,
    fetch_root_config,
    open_client_contract,
    open_proxy_contract,
    post_signed,
    proxy_contract,
    read_client_state,
    read_proxy_state,
    read_worker_state,
    root_contract,
    send_client_op,
    send_proxy_op,
    send_root_op,
    worker_contract,
)
from cocoon.chain.payments import (
    PostingPolicy,
    SignedMessage,
    parse_signed,
    parse_signed_boc,
    sign,
    sign_slash_claim,
    sign_state_commit,
    state_init_boc,
    state_init_for,
    verify,
)
from cocoon.chain.pricing import Multipliers, Price, TokenUsage, adjust, price
from cocoon.chain.settings import ChainSettings, LiteServer, open_chain
from cocoon.chain.slashing import (
    SLASH_CLAIM_VALUE,
    SlashReceipt,
    complete_worker_close,
    dispute_slash,
    execute_slash,
    request_worker_close,
    sign_slash_receipt,
    stake_refusal,
    stake_worker,
    stake_worker_body,
)
from cocoon.chain.wallet import KeyPair, OutMsg, Wallet, WalletClient

__all__ = [
    "CONTRACT_NAMES",
    "DEFAULT_COLLATERAL",
    "DEFAULT_SERVICE_CLASSES",
    "FAUCET_ADDRESS",
    "SLASH_CLAIM_VALUE",
    "STATE_ACTIVE",
    "STATE_CLOSED",
    "STATE_CLOSING",
    "TON",
    "AccountNotFound",
    "AccountState",
    "Address",
    "AddressError",
    "Chain",
    "ChainError",
    "ChainSettings",
    "ChainStoreError",
    "ClientState",
    "Collateral",
    "CompiledContract",
    "ExitCode",
    "GetMethodError",
    "InsufficientFunds",
    "KeyPair",
    "LiteChain",
    "LiteServer",
    "LocalChain",
    "LocalNetworkHandles",
    "MessageError",
    "Multipliers",
    "Op",
    "OutMsg",
    "Params",
    "PendingSlash",
    "PostingPolicy",
    "Price",
    "ProxyEntry",
    "ProxyState",
    "RootConfig",
    "RootState",
    "ServiceClass",
    "SignatureError",
    "SignedMessage",
    "SlashReceipt",
    "StackValue",
    "TokenUsage",
    "TransactionFailed",
    "TxRecord",
    "Wallet",
    "WalletClient",
    "WorkerState",
    "address_key",
    "adjust",
    "bootstrap_local_network",
    "check_address",
    "check_optional_address",
    "client_contract",
    "complete_worker_close",
    "decode_body",
    "default_params",
    "deploy_root",
    "dispute_slash",
    "ensure_success",
    "execute_slash",
    "fetch_root_config",
    "load_contract",
    "normalize_address",
    "open_chain",
    "open_client_contract",
    "open_proxy_contract",
    "parse_address",
    "parse_client_state",
    "parse_proxy_state",
    "parse_root_state",
    "parse_signed",
    "parse_signed_boc",
    "parse_worker_state",
    "post_signed",
    "price",
    "proxy_contract",
    "read_client_state",
    "read_proxy_state",
    "read_worker_state",
    "request_worker_close",
    "root_contract",
    "send_client_op",
    "send_proxy_op",
    "send_root_op",
    "sign",
    "sign_slash_claim",
    "sign_slash_receipt",
    "sign_state_commit",
    "stake_refusal",
    "stake_worker",
    "stake_worker_body",
    "state_init_boc",
    "state_init_for",
    "verify",
    "worker_contract",
]
