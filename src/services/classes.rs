//! The classroom as a service: which exercises a class and a student see,
//! a student's workspace for an exercise, joining, signing in and
//! recovering within the limits on wrong guesses, and forgetting a
//! student's workspaces. Every front door (the JSON routes, the pages, the
//! socket) calls these.

use super::ServiceError;
use super::Services;
use crate::classroom::{Class, ClassroomError, Joined, Student};
use crate::exercises::Exercise;
use crate::sessions::{NewSession, OwnerKind, Session};
use std::sync::Arc;

impl Services {
    pub fn find_exercise(&self, id: &str) -> Result<Arc<Exercise>, ServiceError> {
        self.exercises
            .get(id)
            .cloned()
            .ok_or_else(|| ServiceError::NoSuchExercise(id.to_string()))
    }

    /// The exercises a class sees (its teacher's choice, or every one), in
    /// the order of their ids.
    pub async fn class_exercises(
        &self,
        class_id: &str,
    ) -> Result<Vec<Arc<Exercise>>, ServiceError> {
        let assigned = self.classroom.assigned(class_id).await?;
        Ok(self
            .exercises
            .values()
            .filter(|x| assigned.sees(&x.id))
            .cloned()
            .collect())
    }

    /// An exercise of the student's class, or 404 (`not_assigned` when it
    /// exists but the teacher has not given it to this class).
    pub async fn student_exercise(
        &self,
        student: &Student,
        id: &str,
    ) -> Result<Arc<Exercise>, ServiceError> {
        let x = self.find_exercise(id)?;
        if !self.classroom.assigned(&student.class_id).await?.sees(id) {
            return Err(ServiceError::NotAssigned(x.title.clone()));
        }
        Ok(x)
    }

    /// The student this owner is, or 403 when it has not joined a class.
    pub async fn joined(&self, owner: &str) -> Result<Student, ServiceError> {
        self.classroom
            .student_by_owner(owner)
            .await?
            .ok_or(ServiceError::NotJoined)
    }

    /// The student's own workspace for one exercise (starter files on
    /// first use).
    pub async fn exercise_session(
        &self,
        owner: &str,
        x: &Exercise,
    ) -> Result<Arc<Session>, ServiceError> {
        let key = format!("{owner}.x.{}", x.id);
        let fresh = self.registry.get(&key).is_none();
        let session = self
            .registry
            .get_or_create(&key, OwnerKind::Browser, NewSession::default())
            .await?;
        if fresh {
            let handle = session.ensure().await?;
            if let replbox_protocol::FileReply::Listing(list) = handle
                .file(replbox_protocol::FileOp::List {
                    path: String::new(),
                })
                .await?
            {
                if list.is_empty() {
                    for (path, data) in &x.starter {
                        handle.write_file(path.clone(), data.clone()).await?;
                    }
                }
            }
        }
        Ok(session)
    }

    /// Joins a class, within the limit on wrong codes per client (`client`
    /// is the client's limit key).
    pub async fn join_limited(
        &self,
        client: &str,
        code: &str,
        name: &str,
        owner: &str,
    ) -> Result<Joined, ServiceError> {
        self.limits.class_code.check(client)?;
        match self.classroom.join(code, name, owner).await {
            Err(ClassroomError::NoSuchClass) => {
                self.limits.class_code.spend(client);
                Err(ClassroomError::NoSuchClass.into())
            }
            other => Ok(other?),
        }
    }

    /// Signs a teacher in, within the limits on wrong passwords per client
    /// and per teacher name.
    pub async fn sign_in_limited(
        &self,
        client: &str,
        name: &str,
        password: &str,
    ) -> Result<String, ServiceError> {
        let account_key = name.trim().to_lowercase();
        self.limits.sign_in_client.check(client)?;
        self.limits.sign_in_account.check(&account_key)?;
        match self.classroom.login(name, password).await {
            Err(ClassroomError::BadLogin) => {
                self.limits.sign_in_client.spend(client);
                self.limits.sign_in_account.spend(&account_key);
                Err(ClassroomError::BadLogin.into())
            }
            other => Ok(other?),
        }
    }

    /// The student a recovery code names, within the limit on wrong codes
    /// per client; `owner` (the asking browser) becomes theirs.
    pub async fn recover_limited(
        &self,
        client: &str,
        code: &str,
        owner: &str,
    ) -> Result<Student, ServiceError> {
        self.limits.recovery.check(client)?;
        match self.classroom.recover(code, owner).await {
            Err(ClassroomError::BadRecoveryCode) => {
                self.limits.recovery.spend(client);
                Err(ClassroomError::BadRecoveryCode.into())
            }
            other => Ok(other?),
        }
    }

    /// A teacher's own class, or 404.
    pub async fn class_of(&self, teacher: &str, class: &str) -> Result<Class, ServiceError> {
        match self.classroom.class(class).await? {
            Some(c) if c.teacher_id == teacher => Ok(c),
            _ => Err(ServiceError::NotYourClass),
        }
    }

    /// Gives a class these exercises (all of them must exist).
    pub async fn choose_exercises(
        &self,
        class_id: &str,
        exercises: &[String],
    ) -> Result<(), ServiceError> {
        if let Some(unknown) = exercises.iter().find(|x| !self.exercises.contains_key(*x)) {
            return Err(ServiceError::UnknownExercise(unknown.clone()));
        }
        self.classroom.assign(class_id, exercises).await?;
        Ok(())
    }

    /// Removes a student from a class, with their exercise workspaces.
    pub async fn forget_student(&self, class_id: &str, student: &str) -> Result<(), ServiceError> {
        let s = self.classroom.remove_student(class_id, student).await?;
        for x in self.exercises.keys() {
            let key = format!("{}.x.{x}", s.owner);
            if self.registry.get(&key).is_some() {
                let _ = self.registry.remove(&key).await;
            }
        }
        Ok(())
    }
}
