"""Sub-commands of the ``dsflash`` CLI (see :mod:`dsflash_ros.cli`)."""
