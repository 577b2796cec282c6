"""Loading a Code Llama-format checkpoint for inference, with errors a user can act on."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codellama_lsp.checkpoint.download import Progress
from codellama_lsp.checkpoint.files import (
    CONFIG_LIMIT,
    MODEL_FILES,
    ModelFilesError,
    UnreadableFile,
    read_regular_file,
    resolve_model_folder,
    weight_files,
)
from codellama_lsp.checkpoint.tokenizer import FimTokenizer, TokenizerError, load_tokenizer
from codellama_lsp.engine.interface import EngineSetupError
from codellama_lsp.settings import Settings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class ModelLoadError(EngineSetupError):
    """The model cannot be loaded; the message is meant for the user."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: FimTokenizer
    device: torch.device
    max_positions: int
    description: str
    decode_graphs: bool = False
    """Decode steps replay a CUDA graph over a static cache (see decode_graph.py)."""


def pick_device(requested: str) -> torch.device:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device '{requested}' was asked for, but torch sees no CUDA GPU "
            f"(torch {torch.__version__}; is this a CPU-only build?)"
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' was asked for, but Metal is not available")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    import torch

    if requested != "auto":
        dtype: torch.dtype = getattr(torch, requested)
        return dtype
    return torch.float32 if device.type == "cpu" else torch.float16


def use_cpu_threads(requested: int) -> int:
    """Give torch `requested` CPU threads (0: the automatic choice) and say how many it has.

    Every operation waits for the slowest of torch's threads, and a thread whose core another
    program holds (a build, a browser, another language server) waits for the scheduler: with
    torch's default of one thread per physical core, a completion on 2 cores with one of them
    busy took 2.9x as long as on the quiet machine. The automatic choice leaves one physical
    core to the rest of the machine (one thread on a machine of one or two cores); an
    `OMP_NUM_THREADS` set by the user is kept. Every path that loads a model calls this.
    """
    import torch

    if requested == 0:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        requested = max(1, physical_cores() - 1)
    torch.set_num_threads(requested)
    return requested


def physical_cores() -> int:
    """The physical cores among the CPUs this process may run on (SMT siblings count once)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:
        cpus = list(range(os.cpu_count() or 1))
    cores: set[str] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(topology.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return len(cores)


def load_model(
    settings: Settings,
    progress: Progress | None = None,
    tokenizer: FimTokenizer | None = None,
) -> LoadedModel:
    """The tokenizer first (cheap, and it proves the checkpoint can infill; a caller that has
    loaded it already passes it), then the weights (their download, on first use of a hub id,
    reported to `progress`)."""
    import torch

    try:
        tokenizer = tokenizer or load_tokenizer(settings.model)
        folder = resolve_model_folder(settings.model, MODEL_FILES, progress)
    except (TokenizerError, ModelFilesError) as error:
        raise ModelLoadError(str(error)) from error
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    threads = use_cpu_threads(settings.threads)
    quantization = _quantization_config(settings.quantization, device)
    weights = weight_files(folder)
    if not weights:
        raise ModelLoadError(
            f"{folder} has no .safetensors weights (only safetensors are loaded: pickled "
            "PyTorch weights can run arbitrary code)"
        )
    _refuse_what_cannot_fit(settings, folder, weights, device, dtype)
    model = _read_weights(settings, folder, device, dtype, quantization)
    embeddings = model.get_input_embeddings()
    if (
        isinstance(embeddings, torch.nn.Embedding)
        and embeddings.num_embeddings < tokenizer.vocab_size
    ):
        raise ModelLoadError(
            f"{settings.model}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{embeddings.num_embeddings}: they do not belong together"
        )
    from codellama_lsp.engine.decode_graph import graphs_work

    with torch.inference_mode():
        # The first forward pass initialises kernels (seconds on a CPU): pay it while loading,
        # not on the user's first completion.
        model(input_ids=torch.tensor([[tokenizer.ids.bos]], device=device), logits_to_keep=1)
        decode_graphs = quantization is None and graphs_work(model)
    max_positions = getattr(model.config, "max_position_embeddings", None) or 4096
    detail = str(dtype).removeprefix("torch.")
    if device.type == "cpu":
        detail += f", {threads} CPU thread" + ("s" if threads != 1 else "")
    description = f"{settings.model} on {device} ({detail})"
    if decode_graphs:
        description += ", CUDA graphs"
    return LoadedModel(model, tokenizer, device, max_positions, description, decode_graphs)


def _read_weights(
    settings: Settings,
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    quantization: object | None,
) -> PreTrainedModel:
    """The model of `folder`'s safetensors weights, for inference; failures as ModelLoadError."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=dtype,
            device_map=device.type if quantization else {"": device},
            attn_implementation="sdpa",
            quantization_config=quantization,
            trust_remote_code=settings.trust_remote_code,
            use_safetensors=True,
            local_files_only=True,
        )
    except torch.OutOfMemoryError as error:
        raise ModelLoadError(
            f"out of memory loading {settings.model} on {device} in {dtype}: try a smaller model, "
            "quantization 4bit/8bit, or device cpu"
        ) from error
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelLoadError(_weights_problem(folder, error)) from error
    model.eval()
    return model


SIZE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
SIZE_LIMIT = 2**31
"""No dimension of a model reaches this: torch's kernels index with 32-bit integers."""


def _refuse_what_cannot_fit(
    settings: Settings,
    folder: Path,
    weights: list[Path],
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Refuse, before anything is allocated, a checkpoint whose config.json describes a model
    that its weights cannot hold or that the memory cannot: the loader allocates what the
    config says (a config edited to 10^7-wide MLPs grows the server by GBs) before reading a
    weight."""
    config_path = folder / "config.json"
    parameters = _declared_parameters(config_path)
    if parameters is None:
        return
    held = sum(path.stat().st_size for path in weights)
    if held * 2 < parameters:  # a weight holds at least 4 bits, even quantized
        raise ModelLoadError(
            f"{config_path} describes ~{_count(parameters)} parameters, but the weights hold "
            f"only {held:,} bytes: they do not belong together"
        )
    bits = {"8bit": 8, "4bit": 4}.get(settings.quantization, dtype.itemsize * 8)
    needed = parameters * bits // 8
    available = _available_memory(device)
    if available is not None and needed > available:
        raise ModelLoadError(
            f"{settings.model} needs ~{needed / 1e9:.1f} GB on {device} in "
            f"{str(dtype).removeprefix('torch.')}, but only {available / 1e9:.1f} GB are "
            "available: try a smaller model"
            + (", quantization 4bit/8bit" if device.type == "cuda" else "")
        )


def _declared_parameters(config_path: Path) -> int | None:
    """The parameters a Llama-like config.json describes (embeddings, layers of attention and
    MLP, lm_head), or None where it does not say (the loader then explains what is wrong)."""
    try:
        config = json.loads(read_regular_file(config_path, CONFIG_LIMIT))
    except (UnreadableFile, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    sizes: dict[str, int] = {}
    for name in SIZE_FIELDS:
        value = config.get(name)
        if value is None:
            continue
        if type(value) is not int or not 0 < value < SIZE_LIMIT:
            raise ModelLoadError(f"{config_path}: {name} {value!r} is not a size a model has")
        sizes[name] = value
    try:
        vocab, hidden, width, layers, heads = (sizes[name] for name in SIZE_FIELDS[:5])
    except KeyError:
        return None
    kv_heads = sizes.get("num_key_value_heads", heads)
    head_dim = sizes.get("head_dim", hidden // heads)
    attention = 2 * hidden * head_dim * (heads + kv_heads)
    layer = attention + 3 * hidden * width + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * layer + hidden


def _available_memory(device: torch.device) -> int | None:
    """The bytes a model may take on `device`, where that can be known."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    return None


def _count(parameters: int) -> str:
    for scale, word in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if parameters >= scale:
            return f"{parameters / scale:.1f} {word}"
    return str(parameters)


def _quantization_config(quantization: str, device: torch.device) -> object | None:
    if quantization == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"quantization '{quantization}' needs bitsandbytes: "
            "pip install 'codellama-lsp[quantization]'"
        )
    if device.type != "cuda":
        raise ModelLoadError(f"quantization '{quantization}' needs a CUDA GPU, not {device}")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype="float16")


def _weights_problem(folder: Path, error: BaseException) -> str:
    """Why the weights in `folder` did not load, naming the broken file if there is one.

    The loader's own message does not say which file (of a sharded checkpoint, say) it was.
    """
    from safetensors import SafetensorError, safe_open

    for path in weight_files(folder):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as broken:
            return f"{path} is not a valid safetensors file: {_first_line(broken)}"
    detail = _first_line(error)
    if str(folder) in detail:  # it names the file already
        return f"cannot load the model: {detail}"
    return f"cannot load the weights in {folder}: {detail}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
