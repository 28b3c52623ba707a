# compare.delegation returns None ("the probe reports its SyntaxError") for a cell the grader cannot
# parse. ast.parse gives up at about 3000 nested unary minuses under the grader's recursion limit
# (RecursionError during ast construction); the probe compiles the same text once an earlier answer
# cell has raised the limit (torch.sys.setrecursionlimit: clean syntax). Then the rest of this cell
# (plain torch delegation, imports, exec: anything) is never read. DEEP is put in front by the test.
