"""Where a timed network runs: eager PyTorch, or exported to ONNX and run by ONNX Runtime or OpenVINO.

People who search for a CPU ship an exported graph, not eager PyTorch, and each runtime fuses operators and plans
memory its own way, so a module's cost, the merge cost and the per-network overhead differ per runtime. A backend
turns a module and its example input into a callable ``run(example_input)`` that executes the same computation in
that runtime at batch 1 with a fixed number of threads; :mod:`profiler.timing` times the callable exactly as it times
an eager module. Every backend's numbers are float32: OpenVINO is told so, since on AMX/AVX-512-BF16 CPUs it would
otherwise choose bfloat16 and compute another network.
"""

from __future__ import annotations

import importlib
import io
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from instanas.batchnorm import recalibrate_batch_norm
from instanas.errors import BackendError, ConfigError
from instanas.metagraph import ChildNetwork, MetaGraph, OutputMerge

BACKENDS = ("eager", "onnxruntime", "openvino")
_PACKAGE = {"onnxruntime": "onnxruntime", "openvino": "openvino"}  # the module a backend imports
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}  # the pip extra that installs it
ONNX_OPSET = 17


def check_backend(name: str) -> None:
    """Refuse an unknown backend, or one whose runtime is not installed, in one line naming the extra."""
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: use one of {', '.join(BACKENDS)}")
    if name == "eager":
        return
    for package in (_PACKAGE[name], "onnx"):
        try:
            importlib.import_module(package)
        except ImportError:
            raise BackendError(f"backend {name} needs the {package} package: pip install 'instanas[{_EXTRA[name]}]'") \
                from None


def backend_version(name: str) -> str:
    """The runtime's version, recorded in a table's fingerprint (eager: torch's, which the fingerprint has anyway)."""
    check_backend(name)
    if name == "eager":
        return torch.__version__
    module = importlib.import_module(_PACKAGE[name])
    return module.get_version() if name == "openvino" else module.__version__


def _tensors(example_input) -> tuple[torch.Tensor, ...]:
    """A module's input as the flat tuple of tensors an exported graph takes (a merge takes several outputs)."""
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def onnx_bytes(module: nn.Module, example_input) -> bytes:
    """``module`` (in eval mode) exported to ONNX for ``example_input``, its tensors as the graph's inputs.

    The TorchScript-based exporter: it traced a child in 0.7 s where torch.export's took 2.7 s, and a profile exports
    every entry three times. The graph is the same computation; its deprecation warning says nothing about that and
    would break the one-line output.
    """
    buffer = io.BytesIO()
    tensors = _tensors(example_input)
    arguments = (example_input,) if isinstance(example_input, (tuple, list)) else tensors
    names = [f"input{index}" for index in range(len(tensors))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), arguments, buffer, input_names=names, output_names=["output"],
                          opset_version=ONNX_OPSET, dynamo=False)
    return buffer.getvalue()


class OnnxRuntimeNetwork:
    """An exported module in one ONNX Runtime session: ``threads`` intra-op threads, one inter-op, sequential.

    Every session of the process shares one thread pool of ``threads`` threads, as one deployed model's session has
    its own. With a pool per session, paired timing alternates two sessions whose idle workers spin for a while after
    each run, taking the cores the other needs: the reference then took 1.2 ms beside a merge and 2.5 ms beside a
    module, with ratio spreads of 30–50 %; on the shared pool it takes 1.2 ms beside both, spreads 1–4 %. A session
    of another thread count than the pool's (one per process) gets its own pool, with spinning off.
    """

    _pool_threads: int | None = None

    def __init__(self, graph: bytes, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        if self._shared_pool(threads):
            options.use_per_session_threads = False
        else:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._names = [value.name for value in self.session.get_inputs()]

    def __call__(self, example_input):
        feeds = {name: tensor.numpy() for name, tensor in zip(self._names, _tensors(example_input))}
        return self.session.run(None, feeds)[0]

    @classmethod
    def _shared_pool(cls, threads: int) -> bool:
        """Whether sessions of ``threads`` threads run on the process's shared pool (made by the first one)."""
        if cls._pool_threads is None:
            from onnxruntime.capi import _pybind_state

            try:
                _pybind_state.set_global_thread_pool_sizes(threads, 1)  # before the runtime's environment exists
            except (AttributeError, RuntimeError):  # a runtime without it, or a session made before ours
                cls._pool_threads = 0
            else:
                cls._pool_threads = threads
        return cls._pool_threads == threads


class OpenVINONetwork:
    """An exported module compiled by OpenVINO for the CPU: ``threads`` threads, one stream, latency hint, float32."""

    _core = None  # one OpenVINO runtime for the process (creating one costs more than compiling a child)

    def __init__(self, graph: bytes, threads: int):
        import openvino

        core = OpenVINONetwork._core = OpenVINONetwork._core or openvino.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        model = core.read_model(graph, b"")  # the ONNX bytes as they are: no file, no conversion pass
        self.request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, example_input):
        arrays = [tensor.numpy() for tensor in _tensors(example_input)]
        return self.request.infer(arrays, share_inputs=True, share_outputs=True)[0]


_RUNTIMES = {"onnxruntime": OnnxRuntimeNetwork, "openvino": OpenVINONetwork}


class _Pieces:
    """Each module of a meta-graph exported once, per input shape: a child's graph is stitched from the pieces of
    the modules it runs (stem, each selected module, each cell's merge, head), renamed apart and wired in order.

    Tracing a whole child costs 0.5–2.5 s here (the exporter traces Python, module by module); a correlate of
    thousands of children from one meta-graph would spend hours on it. The stitched graph runs the same operators on
    the same weights: ``instanas export`` checks it against PyTorch, and so do the tests. A piece keeps the weights its
    module had when it was first exported: what is timed does not depend on their values, and ``export`` builds a
    fresh child.
    """

    def __init__(self):
        import onnx

        self._onnx = onnx
        self._graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {input shapes: piece}
        self._merges: dict[tuple[str, int], OutputMerge] = {}
        self.opset, self.ir_version = None, None

    def _piece(self, module: nn.Module, shapes: tuple[tuple[int, ...], ...]):
        """``module``'s graph for inputs of ``shapes`` and the shape of its output, exported on first use."""
        pieces = self._graphs.setdefault(module, {})
        if shapes not in pieces:
            tensors = tuple(torch.randn(shape) for shape in shapes)
            example = tensors if len(tensors) > 1 else tensors[0]  # a merge takes a tuple of outputs
            with torch.no_grad():
                output_shape = tuple(module.eval()(example).shape)
            model = self._onnx.load_from_string(onnx_bytes(module, example))
            self.opset, self.ir_version = model.opset_import, model.ir_version
            pieces[shapes] = model.graph, output_shape
        return pieces[shapes]

    def child(self, child: ChildNetwork, example_input: torch.Tensor) -> bytes:
        """The ONNX model of ``child`` (in eval mode) for inputs shaped like ``example_input``."""
        from onnx import helper

        nodes, weights = [], []

        def append(module: nn.Module, inputs: list[tuple[str, tuple]], prefix: str) -> tuple[str, tuple]:
            """Add ``module``'s piece fed by ``inputs`` (name, shape); return its output's name and shape."""
            piece, shape = self._piece(module, tuple(input_shape for _, input_shape in inputs))
            wired = {value.name: name for value, (name, _) in zip(piece.input, inputs)}

            def renamed(name: str) -> str:
                return wired.get(name, prefix + name) if name else name

            for weight in piece.initializer:
                weights.append(copy := type(weight)())
                copy.CopyFrom(weight)
                copy.name = prefix + weight.name
            for node in piece.node:
                nodes.append(copy := type(node)())
                copy.CopyFrom(node)
                copy.name = prefix + node.name
                copy.input[:] = [renamed(name) for name in node.input]
                copy.output[:] = [renamed(name) for name in node.output]
            return renamed(piece.output[0].name), shape

        child.eval()
        x = append(child.stem, [("input0", tuple(example_input.shape))], "stem/")
        for index, cell in enumerate(child.cells):
            outputs = [append(module, [x], f"cell{index}/{position}/") for position, module in enumerate(cell.selected)]
            if len(outputs) == 1:
                x = outputs[0]
            else:
                merge = self._merges.setdefault((cell.merge, len(outputs)), OutputMerge(cell.merge))
                x = append(merge, outputs, f"cell{index}/merge/")
        name, shape = append(child.head, [x], "head/")
        nodes.append(helper.make_node("Identity", [name], ["output"], name="output"))
        float32 = self._onnx.TensorProto.FLOAT
        image = helper.make_tensor_value_info("input0", float32, example_input.shape)
        graph = helper.make_graph(nodes, "child", [image], [helper.make_tensor_value_info("output", float32, shape)],
                                  weights)
        model = helper.make_model(graph, opset_imports=self.opset)
        model.ir_version = self.ir_version
        return model.SerializeToString()


_pieces: _Pieces | None = None


def network_onnx(module: nn.Module, example_input) -> bytes:
    """``module``'s ONNX graph: a child stitched from its modules' pieces (exported once each), anything else (a
    profile entry, the controller, a baseline's part) exported whole."""
    global _pieces
    if not isinstance(module, ChildNetwork):
        return onnx_bytes(module, example_input)
    _pieces = _pieces or _Pieces()
    return _pieces.child(module, example_input)


def compile_network(module: nn.Module, example_input, backend: str, threads: int) -> Callable:
    """A callable that runs ``module`` on ``example_input`` in ``backend`` (eager: the module itself, in eval mode).

    Call outside ``torch.inference_mode()``: the exporter traces the module.
    """
    check_backend(backend)
    if backend == "eager":
        return module.eval()
    return _RUNTIMES[backend](network_onnx(module, example_input), threads)


def seeded_child(arch: np.ndarray, resolution: int, *, merge: str = "mean", seed: int = 0) -> nn.Module:
    """The child of ``arch`` with seeded random weights, in eval mode: what ``instanas export`` writes.

    Its batch-norm statistics are estimated on 32 random images first: with a fresh layer's (mean 0, variance 1) the
    activations of an untrained network shrink cell by cell to nothing, its output stops depending on its input, and
    comparing two runtimes' outputs would check only the classifier's bias.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        child = MetaGraph(resolution, merge=merge).child(arch)
        recalibrate_batch_norm(child, [torch.randn(32, 3, resolution, resolution)])
    return child.eval()


def export_difference(module: nn.Module, graph: bytes, example_input) -> tuple[float, float]:
    """ONNX Runtime's output of ``graph`` against PyTorch's on ``example_input``: the largest absolute difference,
    and the largest absolute output (the scale the difference is judged against)."""
    check_backend("onnxruntime")
    with torch.inference_mode():
        expected = module.eval()(example_input).numpy()
    produced = OnnxRuntimeNetwork(graph, threads=1)(example_input)
    return float(np.abs(produced - expected).max()), float(np.abs(expected).max())
