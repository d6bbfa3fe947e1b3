/* Output-folder path logic (src/base/file.c): cast_path_relation by real path
 * (symlinks, "..", not-yet-existing tails, name prefixes that are not
 * folders), cast_dir_is_empty, and the staging folder's swap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "check.h"

static void touch(const char *path) {
    FILE *fp = fopen(path, "w");
    if (fp) fputs("x", fp), fclose(fp);
}

static char *at(const char *root, const char *rel) { return cast_path_join(root, rel); }

int main(void) {
    char tmpl[] = "/tmp/cast_paths_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return check_report();
    cast_err err = {0};
    char *m = at(root, "model"), *mb = at(root, "modelb"), *w = at(root, "model/model.safetensors"), *lnk = at(root, "link"),
         *hard = at(root, "hard.safetensors");
    CHECK(cast_mkdirs(m, &err) == 0);
    CHECK(cast_mkdirs(mb, &err) == 0);
    touch(w);
    CHECK(symlink(m, lnk) == 0);
    CHECK(link(w, hard) == 0);

    /* the same folder, by another name */
    CHECK(cast_path_relation(m, m) == CAST_PATH_SAME);
    CHECK(cast_path_relation(lnk, m) == CAST_PATH_SAME);
    char *dots = at(root, "model/../model/."), *slash = at(root, "model/");
    CHECK(cast_path_relation(dots, m) == CAST_PATH_SAME);
    CHECK(cast_path_relation(slash, m) == CAST_PATH_SAME);
    /* a hard link is the same file */
    CHECK(cast_path_relation(hard, w) == CAST_PATH_SAME);
    /* inside, also through a symlink and for a path that does not exist yet */
    char *deep = at(root, "link/new/deeper"), *gone = at(root, "nope/../model/x");
    CHECK(cast_path_relation(deep, m) == CAST_PATH_INSIDE);
    CHECK(cast_path_relation(gone, m) == CAST_PATH_INSIDE);
    CHECK(cast_path_relation(w, m) == CAST_PATH_INSIDE);
    /* contains */
    CHECK(cast_path_relation(root, w) == CAST_PATH_CONTAINS);
    char *up = at(root, "model/..");
    CHECK(cast_path_relation(up, m) == CAST_PATH_CONTAINS);
    CHECK(cast_path_relation("/", m) == CAST_PATH_CONTAINS);
    /* a name prefix is not a folder: modelb is not inside model */
    CHECK(cast_path_relation(mb, m) == CAST_PATH_UNRELATED);
    CHECK(cast_path_relation(m, mb) == CAST_PATH_UNRELATED);
    char *sib = at(root, "model.tmp.1");
    CHECK(cast_path_relation(sib, m) == CAST_PATH_UNRELATED);
    /* a relative path resolves against the working folder */
    CHECK(chdir(root) == 0);
    CHECK(cast_path_relation("model/sub", m) == CAST_PATH_INSIDE);
    CHECK(cast_path_relation("./modelb/../model", m) == CAST_PATH_SAME);
    char *r = cast_path_real("not/yet/../there");
    char *want = at(root, "not/there");
    char *rw = cast_path_real(want); /* root itself may sit behind a symlink (/tmp) */
    CHECK_MSG(r && rw && !strcmp(r, rw), "%s vs %s", r ? r : "(null)", rw ? rw : "(null)");
    free(r);
    free(rw);
    free(want);

    /* empty or not */
    CHECK(cast_dir_is_empty(mb) == 1);
    CHECK(cast_dir_is_empty(m) == 0);
    CHECK(cast_dir_is_empty(w) == -1);
    char *none = at(root, "none");
    CHECK(cast_dir_is_empty(none) == -1);

    /* staging: built beside, swapped in whole; the old content is gone */
    char *stage = NULL;
    CHECK(cast_stage_dir(m, &stage, &err) == 0);
    CHECK(stage && cast_dir_is_empty(stage) == 1);
    CHECK(stage && cast_path_relation(stage, m) == CAST_PATH_UNRELATED);
    char *fresh = stage ? at(stage, "fresh.txt") : NULL;
    if (fresh) touch(fresh);
    CHECK(cast_file_exists(w)); /* untouched until the commit */
    CHECK(stage && cast_stage_commit(m, stage, &err) == 0);
    char *moved = at(m, "fresh.txt");
    CHECK(cast_file_exists(moved));
    CHECK(!cast_file_exists(w));
    CHECK(stage && access(stage, F_OK) != 0);
    free(moved);
    free(fresh);
    free(stage);
    /* the hard link kept the old bytes; remove_tree clears everything, symlinks not followed */
    CHECK(cast_file_exists(hard));
    CHECK(cast_remove_tree(lnk, &err) == 0);
    CHECK(cast_dir_exists(m));
    CHECK(cast_remove_tree(root, &err) == 0);
    CHECK(access(root, F_OK) != 0);

    free(m), free(mb), free(w), free(lnk), free(hard), free(dots), free(slash), free(deep), free(gone), free(up), free(sib),
        free(none);
    return check_report();
}
