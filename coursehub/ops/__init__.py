"""Operations: the hub's monitor and status page, capacity and cost planning.

`monitor`, `servers`, `kernelwatch`, `handlers` run inside the hub process; `history`, `status`,
`charts` and `plan` are pure.
"""
