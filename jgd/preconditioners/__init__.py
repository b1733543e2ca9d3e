"""Non-diagonal preconditioners: Shampoo, SOAP and PSGD-Kron, with their blocking, grafting and schedules."""
