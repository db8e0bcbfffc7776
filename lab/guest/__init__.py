"""The Windows guest twin: per-VM state like a disk, a PowerShell-subset emulator behind real
sshd, and a supervisor that follows vCenter to boot, clone, sysprep and power guests."""
