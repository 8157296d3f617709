"""The generated C on emulated Cortex-M boards: cross-compiled with arm-none-eabi-gcc (shared
startup code and harness, one linker script per chip with its real flash and RAM, package data
under templates/board/), run under qemu-system-arm with semihosting, and measured: flash and RAM
of the library's object file, peak stack (a painted stack), instructions per inference, and
instructions per step in a profiling build.

The test images reach the board through semihosting file reads, one image at a time, and every
score comes back the same way (scores.bin), so a chip with 8 KiB of RAM and 128 KiB of flash
runs any number of them and every score is compared with the host's.

Instructions: QEMU runs with `-icount shift=0`, one instruction per nanosecond of virtual time,
and SysTick counts the board's processor clock, so one tick is 10^9 / clock instructions (40 on
the MPS2 boards at 25 MHz). These are instruction counts, not cycles: on a real Cortex-M4 a load
takes 2 cycles and a taken branch 2 to 4.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from mnist_edge.codegen.emit import SOURCE
from mnist_edge.codegen.verify import STRICT
from mnist_edge.errors import CodegenError

CROSS_CC = "arm-none-eabi-gcc"
CROSS_SIZE = "arm-none-eabi-size"
CROSS_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
QEMU = "qemu-system-arm"
SHARED_FILES = ("startup.c", "main.c", "sections.ld")
# The library is built for speed; -ffreestanding keeps gcc from turning its loops into calls to
# memcpy/memset (a freestanding library has no libc to call).
OPTIMIZATION = ("-O2", "-ffreestanding")
PROFILE_IMAGES = 20  # the profiling build's images: counts per step are averages per image
MIN_STACK_BYTES = 256  # the least stack any run needs (the smallest MIN_STACK of the linker scripts)
FNV_OFFSET, FNV_PRIME = 2166136261, 16777619
M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
M3 = ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft")


@dataclass(frozen=True)
class Board:
    name: str  # QEMU's machine name
    chip: str
    cpu: str
    flags: tuple[str, ...]
    linker_script: str  # under templates/board/: the chip's flash and RAM
    clock_hz: int  # SysTick's processor clock under QEMU (-icount shift=0)
    note: str = ""

    @property
    def instructions_per_tick(self) -> float:
        return 1e9 / self.clock_hz


BOARDS = {
    "mps2-an386": Board("mps2-an386", "MPS2 FPGA, AN386", "Cortex-M4F", M4F, "mps2.ld", 25_000_000),
    # No FPU: the float requantization runs in exact integer code (requantize.c).
    "mps2-an385": Board("mps2-an385", "MPS2 FPGA, AN385", "Cortex-M3", M3, "mps2.ld", 25_000_000),
    "stm32vldiscovery": Board("stm32vldiscovery", "STM32F100RB", "Cortex-M3", M3, "stm32f100rb.ld", 24_000_000),
    "microbit": Board("microbit", "nRF51822", "Cortex-M0", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
                      "nrf51822.ld", 16_000_000,
                      "the real nRF51 has no SysTick (QEMU adds one): its instruction counts exist only under QEMU"),
    "netduinoplus2": Board("netduinoplus2", "STM32F405RG", "Cortex-M4F", M4F, "stm32f405rg.ld", 168_000_000),
}


@dataclass(frozen=True)
class Memory:
    flash_bytes: int
    ram_bytes: int


@dataclass(frozen=True)
class StepProfile:
    step: str
    instructions: int  # per image


@dataclass(frozen=True)
class BoardRun:
    board: str
    cpu: str
    images: int
    digits: list[int]
    scores_hash: str  # FNV-1a over every score, as the board computed it
    expected_hash: str  # the same over the host's scores
    flash_bytes: int  # the library's object file: .text + .rodata
    ram_static_bytes: int  # .data + .bss (the arena)
    stack_peak_bytes: int
    instructions_per_inference: int
    flags: list[str]
    chip: str = ""
    clock_hz: int = 0
    first_differing: list[int] = field(default_factory=list)  # images whose scores differ from the host's
    firmware_flash_bytes: int = 0  # the whole firmware: library, harness, startup
    firmware_ram_bytes: int = 0  # its static data + the stack peak: what the chip's RAM must hold
    board_flash_bytes: int = 0
    board_ram_bytes: int = 0
    profile: list[StepProfile] = field(default_factory=list)

    @property
    def ram_bytes(self) -> int:
        return self.ram_static_bytes + self.stack_peak_bytes

    @property
    def passed(self) -> bool:
        return self.scores_hash == self.expected_hash and not self.first_differing


def board_named(name: str) -> Board:
    if name not in BOARDS:
        raise CodegenError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CodegenError(f"{name} is not installed: apt-get install {package}")
    return found


def check_tools(board: Board) -> None:
    """The cross compiler and QEMU exist: checked before any work."""
    _tool(CROSS_CC, CROSS_PACKAGES)
    _tool(CROSS_SIZE, "binutils-arm-none-eabi")
    _tool(QEMU, "qemu-system-arm")


def scores_hash(scores: np.ndarray) -> str:
    value = FNV_OFFSET
    for byte in np.ascontiguousarray(scores, np.uint8).reshape(-1).tobytes():
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return f"{value:08x}"


def board_file(name: str) -> str:
    return resources.files("mnist_edge.codegen").joinpath(f"templates/board/{name}").read_text("utf-8")


def memory(board: Board) -> Memory:
    """The chip's flash and RAM, read from its linker script (the one place they are written)."""
    text = board_file(board.linker_script)
    sizes = {m[1]: _size(m[2]) for m in re.finditer(r"^\s*(FLASH|RAM)\s*\([^)]*\)\s*:.*LENGTH\s*=\s*(\w+)", text, re.M)}
    return Memory(sizes["FLASH"], sizes["RAM"])


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text, 0)


def _compile(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr.strip() or "no output").splitlines()
        overflow = next((x for x in lines if "overflowed by" in x or "too little room" in x), None)
        raise CodegenError(f"{what} failed: {overflow or next((x for x in lines if 'error' in x), lines[0])}")


def library_flags(board: Board) -> list[str]:
    """Every flag the library is compiled with on BOARD: what its figures were measured with."""
    return [*STRICT, *OPTIMIZATION, *board.flags]


def check_fits(board: Board, flash: int, ram: int) -> None:
    """The library alone within the chip's memory (its RAM with room for the stack), else one
    error naming the figure and the limit."""
    mem = memory(board)
    if flash > mem.flash_bytes:
        raise CodegenError(f"the library does not fit {board.name}: it needs {flash:,} bytes of flash, the "
                           f"{board.chip} has {mem.flash_bytes:,}")
    if ram > mem.ram_bytes - MIN_STACK_BYTES:
        raise CodegenError(f"the library does not fit {board.name}: it needs {ram:,} bytes of RAM (its arena and "
                           f"data), the {board.chip} has {mem.ram_bytes:,} for everything, the stack included")


def build(c_dir: Path, work: Path, board: Board, profile: bool = False) -> tuple[Path, Path]:
    """(the firmware ELF, the library's object file)."""
    cc = _tool(CROSS_CC, CROSS_PACKAGES)
    for name in (*SHARED_FILES, board.linker_script):
        (work / name).write_text(board_file(name))
    defines = ["-DMNIST_EDGE_PROFILE=1"] if profile else []
    library = work / ("model-profile.o" if profile else "model.o")
    _compile([cc, *library_flags(board), *defines, "-I", str(c_dir), "-c", str(c_dir / SOURCE), "-o", str(library)],
             f"{CROSS_CC} {board.cpu}")
    check_fits(board, *footprint(library))
    elf = work / ("firmware-profile.elf" if profile else "firmware.elf")
    # The board files (vector table, semihosting) need GNU C; the library above is strict C99.
    _compile([cc, "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-Os", *board.flags, "-ffreestanding", *defines,
              "-I", str(c_dir), "-nostdlib", "-nostartfiles", "-L", str(work), "-T", str(work / board.linker_script),
              str(library), str(work / "main.c"), str(work / "startup.c"), "-lgcc", "-o", str(elf)],
             f"linking for {board.name} ({board.chip}: {_limits(board)})")
    return elf, library


def _limits(board: Board) -> str:
    mem = memory(board)
    return f"{mem.flash_bytes // 1024} KiB flash, {mem.ram_bytes // 1024} KiB RAM"


def footprint(binary: Path) -> tuple[int, int]:
    """(flash, static RAM) of an object file or firmware, from arm-none-eabi-size -A: flash holds
    code, constants and the initial values of .data; RAM holds .data and .bss."""
    size = _tool(CROSS_SIZE, "binutils-arm-none-eabi")
    done = subprocess.run([size, "-A", str(binary)], capture_output=True, text=True, check=True)
    sections = {m[1]: int(m[2]) for m in re.finditer(r"^(\.\S+)\s+(\d+)", done.stdout, re.M)}
    flash = sum(v for k, v in sections.items() if k.startswith((".text", ".rodata", ".vectors", ".data")))
    ram = sum(v for k, v in sections.items() if k.startswith((".data", ".bss")))
    return flash, ram


def _qemu(board: Board, elf: Path, work: Path, pixels: np.ndarray, timeout: float) -> dict[str, list[str]]:
    (work / "images.bin").write_bytes(np.ascontiguousarray(pixels, np.uint8).tobytes())
    command = [_tool(QEMU, "qemu-system-arm"), "-M", board.name, "-nographic", "-monitor", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=work)
    except subprocess.TimeoutExpired:
        raise CodegenError(f"{board.name} under QEMU did not finish in {timeout:.0f} s") from None
    output = (done.stdout + done.stderr).replace("\r", "")
    found: dict[str, list[str]] = {}
    for key, value in re.findall(r"^(images|hash|ticks_high|ticks|step|stack) ([0-9a-f]+)$", output, re.M):
        found.setdefault(key, []).append(value)
    if done.returncode or len(found.get("hash", [])) != 1:
        reason = {7: "the stack overflowed the RAM"}.get(done.returncode, output.strip()[-200:] or "no output")
        raise CodegenError(f"{board.name} under QEMU failed (exit {done.returncode}): {reason}")
    return found


def _ticks(found: dict[str, list[str]]) -> int:
    return (int(found["ticks_high"][0], 16) << 32) | int(found["ticks"][0], 16)


def run(c_dir: Path, work: Path, board_name: str, pixels: np.ndarray, host_scores: np.ndarray,
        step_names: list[str] | None = None, timeout: float = 900) -> BoardRun:
    """Build, run and measure the library in C_DIR on BOARD_NAME: every score compared with
    HOST_SCORES; with STEP_NAMES, a profiling build on the first images gives each step's count."""
    board = board_named(board_name)
    check_tools(board)
    elf, library = build(c_dir, work, board)
    found = _qemu(board, elf, work, pixels, timeout)
    scores = np.fromfile(work / "scores.bin", np.uint8).reshape(-1, host_scores.shape[1])
    if len(scores) != len(pixels):
        raise CodegenError(f"{board.name} under QEMU returned {len(scores)} images' scores of {len(pixels)}")
    differing = np.flatnonzero((scores != host_scores).any(axis=1))
    flash, ram = footprint(library)
    firmware_flash, firmware_ram = footprint(elf)
    stack = int(found["stack"][0], 16)
    mem = memory(board)
    per_image = _ticks(found) * board.instructions_per_tick / len(pixels)
    profile = _profile(c_dir, work, board, pixels, step_names, timeout) if step_names else []
    return BoardRun(board.name, board.cpu, len(pixels), scores.argmax(axis=1).tolist(), found["hash"][0],
                    scores_hash(host_scores), flash, ram, stack, round(per_image), library_flags(board),
                    chip=board.chip, clock_hz=board.clock_hz, first_differing=differing[:10].tolist(),
                    firmware_flash_bytes=firmware_flash, firmware_ram_bytes=firmware_ram + stack,
                    board_flash_bytes=mem.flash_bytes, board_ram_bytes=mem.ram_bytes, profile=profile)


def _profile(c_dir: Path, work: Path, board: Board, pixels: np.ndarray, step_names: list[str],
             timeout: float) -> list[StepProfile]:
    """Instructions per image in each step, from a build with SysTick read around every step's work."""
    elf, _ = build(c_dir, work, board, profile=True)
    images = pixels[:PROFILE_IMAGES]
    found = _qemu(board, elf, work, images, timeout)
    ticks = [int(value, 16) for value in found.get("step", [])]
    if len(ticks) != len(step_names):
        raise CodegenError(f"{board.name}: the profiling build reported {len(ticks)} steps, not {len(step_names)}")
    return [StepProfile(name, round(t * board.instructions_per_tick / len(images)))
            for name, t in zip(step_names, ticks, strict=True)]


__all__ = ["BOARDS", "Board", "BoardRun", "Memory", "StepProfile", "board_named", "check_fits", "check_tools",
           "footprint", "memory", "run", "scores_hash"]
