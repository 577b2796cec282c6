"""Loading a Code Llama-format checkpoint for inference, with errors a user can act on."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..download_progress import Progress
from ..model_files import MODEL_FILES, ModelFilesError, resolve_model_folder
from ..settings import Settings
from ..tokenizer import FimTokenizer, TokenizerError, load_tokenizer
from .interface import EngineSetupError

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
    if not any(folder.glob("*.safetensors")):
        raise ModelLoadError(
            f"{folder} has no .safetensors weights (only safetensors are loaded: pickled "
            "PyTorch weights can run arbitrary code)"
        )
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from .decode_graph import graphs_work

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
    embeddings = model.get_input_embeddings()
    if (
        isinstance(embeddings, torch.nn.Embedding)
        and embeddings.num_embeddings < tokenizer.vocab_size
    ):
        raise ModelLoadError(
            f"{settings.model}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{embeddings.num_embeddings}: they do not belong together"
        )
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

    for path in sorted(folder.glob("*.safetensors")):
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
