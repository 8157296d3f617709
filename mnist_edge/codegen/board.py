"""The generated C on an emulated Cortex-M: cross-compiled with arm-none-eabi-gcc (own startup code
and linker script, package data under templates/board/), run under qemu-system-arm with
semihosting on embedded test images, and measured: flash and RAM of the library's object file,
peak stack (a painted stack), and instructions per inference.

Instructions: QEMU runs with `-icount shift=0` (one instruction per nanosecond of virtual time)
and the boards' SysTick counts the 25 MHz processor clock, so one tick is 40 instructions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mnist_edge.codegen.emit import SOURCE
from mnist_edge.codegen.verify import STRICT
from mnist_edge.errors import CodegenError

CROSS_CC = "arm-none-eabi-gcc"
CROSS_SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"
INSTRUCTIONS_PER_TICK = 40  # 1 GHz of virtual instructions (-icount shift=0) / 25 MHz SysTick
BOARD_FILES = ("startup.c", "main.c", "mps2.ld")
FNV_OFFSET, FNV_PRIME = 2166136261, 16777619


@dataclass(frozen=True)
class Board:
    name: str
    cpu: str
    flags: tuple[str, ...]


BOARDS = {
    "mps2-an386": Board("mps2-an386", "Cortex-M4F", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                     "-mfpu=fpv4-sp-d16")),
    # No FPU: float32 requantization runs in libgcc's soft-float, which is IEEE too.
    "mps2-an385": Board("mps2-an385", "Cortex-M3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft")),
}


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

    @property
    def ram_bytes(self) -> int:
        return self.ram_static_bytes + self.stack_peak_bytes

    @property
    def passed(self) -> bool:
        return self.scores_hash == self.expected_hash


def board_named(name: str) -> Board:
    if name not in BOARDS:
        raise CodegenError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CodegenError(f"{name} is not installed: apt-get install {package}")
    return found


def scores_hash(scores: np.ndarray) -> str:
    value = FNV_OFFSET
    for byte in np.ascontiguousarray(scores, np.uint8).reshape(-1).tobytes():
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return f"{value:08x}"


def _write_images(work: Path, pixels: np.ndarray) -> None:
    rows = ",\n".join("{" + ",".join(map(str, image.reshape(-1))) + "}" for image in pixels)
    (work / "images.h").write_text(f"#include <stdint.h>\n#define MNIST_EDGE_BOARD_IMAGES {len(pixels)}\n"
                                   f"extern const uint8_t board_images[{len(pixels)}][784];\n")
    (work / "images.c").write_text(f'#include "images.h"\nconst uint8_t board_images[{len(pixels)}][784] = {{\n'
                                   f"{rows}\n}};\n")


def _compile(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr.strip() or "no output").splitlines()
        raise CodegenError(f"{what} failed: {next((x for x in lines if 'error' in x), lines[0])}")


def build(c_dir: Path, work: Path, board: Board, pixels: np.ndarray) -> tuple[Path, Path]:
    """(the firmware ELF with the images, the library's object file)."""
    cc = _tool(CROSS_CC, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    for name in BOARD_FILES:
        (work / name).write_text(resources.files("mnist_edge.codegen").joinpath(f"templates/board/{name}")
                                 .read_text("utf-8"))
    _write_images(work, pixels)
    common = ["-Os", *board.flags, "-ffreestanding", "-I", str(c_dir), "-I", str(work)]
    library = work / "model.o"
    _compile([cc, *STRICT, *common, "-c", str(c_dir / SOURCE), "-o", str(library)], f"{CROSS_CC} {board.cpu}")
    elf = work / "firmware.elf"
    # The board files (vector table, semihosting) need GNU C; the library above is strict C99.
    sources = [str(library), *(str(work / name) for name in ("main.c", "startup.c", "images.c"))]
    _compile([cc, "-std=gnu99", "-Wall", "-Wextra", "-Werror", *common, "-nostdlib", "-nostartfiles",
              "-T", str(work / "mps2.ld"), *sources, "-lgcc", "-o", str(elf)], f"{CROSS_CC} linking for {board.name}")
    return elf, library


def footprint(library: Path) -> tuple[int, int]:
    """(flash, static RAM) of an object file, from arm-none-eabi-size -A."""
    size = _tool(CROSS_SIZE, "binutils-arm-none-eabi")
    done = subprocess.run([size, "-A", str(library)], capture_output=True, text=True, check=True)
    sections = {m[1]: int(m[2]) for m in re.finditer(r"^(\.\S+)\s+(\d+)", done.stdout, re.M)}
    flash = sum(v for k, v in sections.items() if k.startswith((".text", ".rodata")))
    ram = sum(v for k, v in sections.items() if k.startswith((".data", ".bss")))
    return flash, ram


def run(c_dir: Path, work: Path, board_name: str, pixels: np.ndarray, host_scores: np.ndarray,
        timeout: float = 600) -> BoardRun:
    board = board_named(board_name)
    qemu = _tool(QEMU, "qemu-system-arm")
    elf, library = build(c_dir, work, board, pixels)
    command = [qemu, "-M", board.name, "-nographic", "-semihosting", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CodegenError(f"{board.name} under QEMU did not finish in {timeout:.0f} s") from None
    found = dict(re.findall(r"^(digits|hash|ticks|stack) (\S+)$", (done.stdout + done.stderr).replace("\r", ""), re.M))
    if done.returncode or len(found) != 4:
        raise CodegenError(f"{board.name} under QEMU failed (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-200:]}")
    flash, ram = footprint(library)
    ticks = int(found["ticks"], 16)
    return BoardRun(board.name, board.cpu, len(pixels), [int(d) for d in found["digits"]], found["hash"],
                    scores_hash(host_scores), flash, ram, int(found["stack"], 16),
                    round(ticks * INSTRUCTIONS_PER_TICK / len(pixels)), [*STRICT, "-Os", *board.flags])


__all__ = ["BOARDS", "Board", "BoardRun", "board_named", "footprint", "run", "scores_hash"]
