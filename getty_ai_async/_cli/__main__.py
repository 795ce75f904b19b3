"""``python -m getty_ai_async._cli``: the same as the ``getty-ai`` command."""

from . import main

main()
