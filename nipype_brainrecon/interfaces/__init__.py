"""Thin Nipype interfaces over the functions of :mod:`nipype_brainrecon`."""
