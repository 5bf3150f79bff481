// Differential check: replays a scenario of internal messages (written by tests/chain/test_crosscheck.py
// from a LocalChain run) on @ton/sandbox, the official emulator at the latest TVM, and prints what each
// transaction did plus the final data hash of every watched contract. Usage: node crosscheck.mjs in.json
import { Blockchain, internal } from "@ton/sandbox";
import { Address, Cell, loadStateInit } from "@ton/core";
import { readFileSync } from "node:fs";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf-8"));
const bc = await Blockchain.create();
const steps = [];
for (const step of scenario.steps) {
  bc.now = step.now;
  const msg = internal({
    from: Address.parse(step.src),
    to: Address.parse(step.dest),
    value: BigInt(step.value),
    bounce: step.bounce,
    body: step.body ? Cell.fromBase64(step.body) : new Cell(),
    stateInit: step.init ? loadStateInit(Cell.fromBase64(step.init).beginParse()) : undefined,
  });
  const res = await bc.sendMessage(msg);
  steps.push(
    res.transactions.map((tx) => {
      const d = tx.description;
      const vm = d.type === "generic" && d.computePhase.type === "vm" ? d.computePhase : null;
      const action = d.type === "generic" ? d.actionPhase : undefined;
      const ok = vm !== null && vm.success && (action === undefined || action.success) && !d.aborted;
      return {
        address: tx.inMessage.info.dest.toRawString(),
        exit: vm ? (vm.success && action && !action.success ? action.resultCode : vm.exitCode) : 0,
        success: ok,
      };
    }),
  );
}
const data = {};
for (const a of scenario.watch) {
  const c = await bc.getContract(Address.parse(a));
  const st = c.accountState;
  data[a] = st && st.type === "active" && st.state.data ? st.state.data.hash().toString("hex") : null;
}
console.log(JSON.stringify({ steps, data }));
