"""Layer 1: what plugin authors import (hook specs, ``Action``, process groups); plugin loading."""
