"""compiler.passes"""
