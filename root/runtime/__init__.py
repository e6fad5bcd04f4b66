"""The embedded local runtime: ``scatter up`` runs a whole deployment as
local processes (a pod supervisor), no container engine needed."""
