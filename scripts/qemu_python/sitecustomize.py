"""Imported at start-up by the emulated aarch64 Python that `scripts/setup_cross` installs for the
loopback farm's aarch64 servers (docs/farm.md). Two things only an emulated server needs:

* ``sys.executable`` is the qemu wrapper script: TVM's RPC server re-executes ``sys.executable``
  for its worker processes, and the bare aarch64 interpreter cannot be exec'd on an x86 host
  without binfmt_misc ("Exec format error").
* The server says that it is emulated: the global function ``edgenas.emulated`` (callable over
  RPC) returns how. edgenas flags every latency measured on such a server ``emulated: true``, so
  no one reads qemu's timings as board speed. A real board has no such function.
"""

import os
import sys

_WRAPPER = os.environ.get("EDGENAS_QEMU_PYTHON")
if _WRAPPER:
    sys.executable = _WRAPPER
    try:
        import tvm_ffi

        tvm_ffi.register_global_func("edgenas.emulated", lambda: os.environ.get("EDGENAS_EMULATED_BY", "qemu-user"))
    except ImportError:  # the wheels are not installed yet: nothing to announce
        pass
