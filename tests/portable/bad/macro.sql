-- expect: CREATE MACRO
CREATE MACRO twice(x) AS x * 2;
