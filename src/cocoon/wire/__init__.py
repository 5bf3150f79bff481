"""cocoon.wire"""
