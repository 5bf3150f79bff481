from cocoon.chain.localchain import LocalChain
from cocoon.chain.wallet import KeyPair, Wallet, WalletClient
from pytoniq_core import Address


async def test_wallet_roundtrip(tmp_path):
    chain = LocalChain(tmp_path / "c.sqlite")
    w = WalletClient(chain, Wallet(KeyPair.generate()))
    tr = await chain.faucet(w.address, 10 * 10**9)
    print(tr)
    dest = Address("0:" + "22" * 32)
    tr = await w.transfer(dest, 10**9, bounce=False)
    for t in tr:
        print(t.address.to_str(), t.success, t.exit_code, t.total_fees, t.gas_used)
    print(await w.seqno(), await w.balance(), (await chain.get_account(dest)).balance)
    print(await chain.run_get_method(w.address, "seqno"))
    print(await chain.run_get_method(w.address, "get_public_key"))
    print(chain.minted, chain.total_balances(), chain.total_fees())
