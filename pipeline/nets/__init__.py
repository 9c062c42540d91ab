"""Network definitions for the face-deblurring models.

Each module holds one network (or one building block) and needs only torch,
so a training stage can pick what it needs without pulling in the rest.
"""
