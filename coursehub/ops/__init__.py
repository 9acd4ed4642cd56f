"""Operations: the hub's monitor and status page, capacity and cost planning.

`monitor`, `servers`, `cgroupstats`, `handlers` run inside the hub process; `history`, `status`,
`charts` and `plan` are pure.
"""
