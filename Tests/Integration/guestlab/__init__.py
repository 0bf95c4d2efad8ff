"""The qmpreplay guest lab: a real QEMU under TCG, optionally with a tiny Linux guest,
plus scenario helpers that make QEMU emit known QMP events. See docs/GUESTLAB.md.

Standard library only, plus qemu.qmp for the QMP client (guestlab.qmp).
"""
from .lab import (Disk, Guest, GuestCommandError, GuestError, Lab, LabUnavailable, REPO,
                  guest_files, lab_cache, qemu_binary, qemu_img, INSTALL_HINT)

__all__ = ["Disk", "Guest", "GuestCommandError", "GuestError", "Lab", "LabUnavailable", "REPO",
           "guest_files", "lab_cache", "qemu_binary", "qemu_img", "INSTALL_HINT"]
