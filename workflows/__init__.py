"""Workflow factories (``init_*_wf``) composing the interfaces of nipype-brainrecon."""
