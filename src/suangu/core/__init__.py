"""Pure domain core: types, market clearing, settlement and ledger rules.

Nothing in here touches a database, the network or the wall clock: every input is passed in.
"""
