"""Offline Solidity compile: standard JSON through native solc (py-solc-x) or solcjs from npm.

Both compilers get the same standard-JSON input (sources by content, pinned settings), so a
native solc on a user's machine and solcjs here produce the same bytecode.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hearth.errors import ToolchainError
from hearth.settings import ARTIFACTS_DIR, CONTRACTS_DIR, NODE_MODULES

SOLC_VERSION = "0.8.30"
# Deployed contracts ship with the package (hearth/artifacts); test-only ones (src/test/) stay in
# the checkout under contracts/artifacts, so no wheel carries them.
CONTRACT_NAMES = ("HearthToken", "JobAudits", "JobMarket", "SimpleArbiter")
TEST_CONTRACT_NAMES = ("MaliciousArbiter",)
TEST_ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
SETTINGS: dict[str, Any] = {
    "evmVersion": "prague",  # eth-tester (py-evm) runs Prague, not Osaka
    "optimizer": {"enabled": True, "runs": 1000},
    "viaIR": True,
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"]}},
}


def _collect_sources() -> dict[str, dict[str, str]]:
    """Project sources plus every OpenZeppelin file they import, by content."""
    sources: dict[str, dict[str, str]] = {}
    pending = sorted((CONTRACTS_DIR / "src").rglob("*.sol"))
    names = {p: str(p.relative_to(CONTRACTS_DIR)) for p in pending}
    while pending:
        path = pending.pop()
        name = names[path]
        text = path.read_text()
        sources[name] = {"content": text}
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("import"):
                continue
            target = line.split('"')[1]
            if target.startswith("@"):
                dep_path, dep_name = NODE_MODULES / target, target
            else:
                dep_path = (path.parent / target).resolve()
                rel = dep_path.relative_to(NODE_MODULES) if NODE_MODULES in dep_path.parents else None
                dep_name = str(rel) if rel else str(dep_path.relative_to(CONTRACTS_DIR))
            if not dep_path.exists():
                raise ToolchainError(f"import {target} not found", hint="run scripts/setup (npm ci)")
            if dep_name not in sources and dep_path not in names:
                names[dep_path] = dep_name
                pending.append(dep_path)
    return dict(sorted(sources.items()))


def standard_input() -> dict[str, Any]:
    """The standard-JSON compiler input for all of Hearth's contracts."""
    return {"language": "Solidity", "sources": _collect_sources(), "settings": SETTINGS}


def _compile_native(inp: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    try:
        import solcx
        from solcx.exceptions import SolcNotInstalled

        try:
            solcx.set_solc_version(SOLC_VERSION, silent=True)
        except SolcNotInstalled:
            return None
        out: dict[str, Any] = solcx.compile_standard(inp, allow_paths=[str(NODE_MODULES)])
        return out, f"solc {SOLC_VERSION} (native, py-solc-x)"
    except ImportError:
        return None


def _compile_solcjs(inp: dict[str, Any]) -> tuple[dict[str, Any], str]:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError("Node.js not found", hint="install Node.js 20 (apt-get install nodejs)")
    if not (NODE_MODULES / "solc").exists():
        raise ToolchainError("solcjs not found in node_modules", hint="run scripts/setup (npm ci)")
    script = (
        "const solc=require('solc');let s='';process.stdin.on('data',d=>s+=d);"
        "process.stdin.on('end',()=>process.stdout.write(JSON.stringify("
        "{version:solc.version(),output:JSON.parse(solc.compile(s))})));"
    )
    proc = subprocess.run(
        [node, "-e", script],
        input=json.dumps(inp),
        capture_output=True,
        text=True,
        cwd=NODE_MODULES.parent,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolchainError(f"solcjs failed: {proc.stderr.strip()[:500]}")
    data = json.loads(proc.stdout)
    version = data["version"]
    if not version.startswith(SOLC_VERSION + "+"):
        raise ToolchainError(f"solcjs is {version}, expected {SOLC_VERSION}", hint="run npm ci")
    return data["output"], f"solcjs {version}"


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile and return one artifact per contract (abi, bytecode, compiler, settings)."""
    inp = standard_input()
    native = _compile_native(inp)
    out, compiler = native if native is not None else _compile_solcjs(inp)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ToolchainError("compile failed:\n" + "\n".join(e["formattedMessage"] for e in errors))
    sources_hash = hashlib.sha256(json.dumps(inp["sources"], sort_keys=True).encode()).hexdigest()
    artifacts: dict[str, dict[str, Any]] = {}
    for file_out in out["contracts"].values():
        for name, c in file_out.items():
            if name not in CONTRACT_NAMES + TEST_CONTRACT_NAMES:
                continue
            artifacts[name] = {
                "contractName": name,
                "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                # Where the linker writes library addresses (JobMarket calls JobAudits).
                "linkReferences": c["evm"]["bytecode"].get("linkReferences", {}),
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "compiler": {"version": SOLC_VERSION, "settings": SETTINGS},
                "sourcesSha256": sources_hash,
            }
    # Which compiler ran is reported, not stored: native solc and solcjs give the same bytes.
    print(f"compiled {len(artifacts)} contracts with {compiler}")
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """The committed text form of an artifact."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def artifact_path(name: str) -> Path:
    """Where the committed artifact of `name` lives (package data or, test-only, the checkout)."""
    return (TEST_ARTIFACTS_DIR if name in TEST_CONTRACT_NAMES else ARTIFACTS_DIR) / f"{name}.json"


def write_artifacts(artifacts: dict[str, dict[str, Any]]) -> list[Path]:
    """Write artifacts as `<Name>.json`; returns the paths written."""
    paths = []
    for name, art in sorted(artifacts.items()):
        path = artifact_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(art))
        paths.append(path)
    return paths


def main() -> None:
    """Entry point of scripts/compile."""
    for p in write_artifacts(compile_contracts()):
        print(p)


if __name__ == "__main__":
    main()
