"""Functions applied to values on workflow connections (``(("field", pop_file), "input")``).

Nipype runs them from their source inside the receiving node, so each is self-contained.
"""


def pop_file(items):
    """The first item of a list (or tuple); anything else as it is (niworkflows' ``pop_file``).

    >>> pop_file(["a.nii", "b.nii"]), pop_file("a.nii")
    ('a.nii', 'a.nii')
    """
    return items[0] if isinstance(items, list | tuple) else items


def second(items):
    """The second item of a list.

    >>> second([1, 2, 3])
    2
    """
    return items[1]
