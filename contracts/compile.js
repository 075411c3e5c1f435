// Compiles the contracts with the solcjs pinned in package-lock.json and writes one JSON artifact
// per contract into the directory given as argv[2]. Output is a pure function of the sources,
// the settings below and the compiler version, so check.sh can compare it byte for byte.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

// [source path relative to contracts/, contract name]
const CONTRACTS = [
  ["CumulativeMerkleDistributor.sol", "CumulativeMerkleDistributor"],
  ["test/TestToken.sol", "TestToken"],
];
const SETTINGS = {
  // cancun rather than the compiler's default (prague) so the bytecode also runs on chains
  // that have not activated prague yet; eth-tester and anvil run either.
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node compile.js OUT_DIR");
  process.exit(2);
}
const here = __dirname;
const sources = {};
const digests = {};
for (const [rel] of CONTRACTS) {
  const text = fs.readFileSync(path.join(here, rel));
  sources[rel] = { content: text.toString("utf8") };
  digests[rel] = crypto.createHash("sha256").update(text).digest("hex");
}

const output = JSON.parse(
  solc.compile(JSON.stringify({ language: "Solidity", sources, settings: SETTINGS })),
);
const problems = output.errors || [];
for (const p of problems) console.error(p.formattedMessage);
// Warnings fail the build too: the committed contract compiles clean.
if (problems.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const [rel, name] of CONTRACTS) {
  const c = output.contracts[rel][name];
  const artifact = {
    contractName: name,
    sourcePath: "contracts/" + rel,
    sourceSha256: digests[rel],
    compiler: { name: "solc", version: solc.version() },
    settings: { evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer },
    abi: c.abi,
    bytecode: "0x" + c.evm.bytecode.object,
    deployedBytecode: "0x" + c.evm.deployedBytecode.object,
  };
  fs.writeFileSync(path.join(outDir, name + ".json"), JSON.stringify(artifact, null, 2) + "\n");
}
