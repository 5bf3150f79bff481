import types

import cocoon.chain as chain


def test_public_api_is_pinned():
    # Submodules show up in dir() once anything imported them (test order decides): not API.
    def is_submodule(name: str) -> bool:
        value = getattr(chain, name)
        return isinstance(value, types.ModuleType) and value.__name__.startswith("cocoon.chain.")

    assert sorted(chain.__all__) == sorted(
        name for name in dir(chain) if not name.startswith("_") and not is_submodule(name)
    )
    for name in chain.__all__:
        assert getattr(chain, name) is not None


def test_only_the_chain_package_imports_pytoniq():
    """Services take addresses and chains from cocoon.chain (parse_address, open_chain), never pytoniq."""
    import ast
    from pathlib import Path

    src = Path(chain.__file__).parents[1]
    offenders = []
    for path in src.rglob("*.py"):
        if path.is_relative_to(src / "chain"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(src)}: {n}" for n in names if n.split(".")[0].startswith("pytoniq")
            ]
    assert offenders == []
