-- writer: DELETE a range of this client's rows of the user table
\set k random(0, :space / :nw - 1)
\set r random(1, 200)
DELETE FROM stress.doc
 WHERE id BETWEEN :k * :nw + 1 AND (:k + :r) * :nw
   AND id % :nw = (:client_id + 1) % :nw;
