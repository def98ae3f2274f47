"""Sandboxed WASM plugins on wasmtime: the ABI (abi), the host (host), the AOT cache
(cache) and plugin lookup (discovery). DESIGN §7; the C SDK is connectors/sdk/rb_plugin.h.
"""
